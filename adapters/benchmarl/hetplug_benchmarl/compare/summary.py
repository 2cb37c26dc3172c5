"""``summary.json`` and its plots from run records (a grid's own runs or a collected multirun).

Schema::

    {
      "task": "vmas/navigation",
      "engine": {"name": "ray", "address": null, "workers": 2},   # collect: {"name": "collect", ...}
      "metric": {"key": "return", "last_fraction": 0.25, "description": "..."},
      "variants": {"iql": {"iqm": 0.1, "ci": [low, high], "runs": 5, "scores": {"seed_0": ...}}, ...},
      "prob_improvement": {"iql+shep": {"value": 0.6, "ci": [low, high], "over": "iql",
                                        "verdict": "not distinguishable from noise (...)"}},
      "curves": {"iql": {"frames": [...], "iqm": [...], "ci": [[low...], [high...]], "runs": 5}},
      "bootstrap": {"library": "rliable 1.2.0", "reps": 2000, "confidence": 0.95, "seed": 0, ...},
      "failed": [{"run": "iql+shep seed 3", "error": "ValueError: ..."}]
    }

The first variant is the reference of ``prob_improvement``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from hetplug_benchmarl.compare import stats
from hetplug_benchmarl.compare.metric import Metric, RunRecord

#: fewer runs than this per variant: a bootstrap CI excluding 0.5 is not called a difference
#: (with 2 runs each, P(improvement) resamples to the same value whenever one variant's runs
#: all beat the other's, so its CI collapses to a point)
MIN_RUNS = 5


def default_order(names: Sequence[str]) -> list[str]:
    """Plain algorithms first (the reference), then the plugin variants, each sorted."""
    return sorted(set(names), key=lambda n: ("+" in n, n))


def build_summary(
    records: Sequence[RunRecord],
    metric: Metric,
    *,
    engine: Mapping[str, Any],
    order: Sequence[str] | None = None,
    failed: Mapping[str, str] | None = None,
    reps: int = stats.REPS,
    confidence: float = stats.CONFIDENCE,
    seed: int = 0,
) -> dict[str, Any]:
    """The summary dict (see the module docstring).

    Args:
        records: runs of one task; several variants, one record per variant and seed.
        metric: how a run is scored.
        engine: the ``engine`` entry.
        order: variant order (the first is the reference); default :func:`default_order`.
            Variants named here without records are listed with 0 runs.
        failed: ``{run label: error line}`` of runs that failed.
        reps, confidence, seed: the bootstrap's replications, coverage and RandomState seed.

    Raises:
        ValueError: records of several tasks, or two records of one variant and seed.
    """
    tasks = sorted({f"{r.environment}/{r.task}" for r in records})
    if len(tasks) > 1:
        raise ValueError(f"runs of {len(tasks)} tasks ({', '.join(tasks)}): summarise one task at a time")
    seen: dict[tuple[str, int], RunRecord] = {}
    for r in records:
        if (r.algorithm, r.seed) in seen:
            raise ValueError(
                f"two runs of {r.algorithm} seed {r.seed}: {seen[r.algorithm, r.seed].source} and {r.source}"
            )
        seen[r.algorithm, r.seed] = r
    names = list(order) if order is not None else default_order([r.algorithm for r in records])
    runs = {name: sorted((r for r in records if r.algorithm == name), key=lambda r: r.seed) for name in names}
    scores = {name: [metric.score(r.curve) for r in rs] for name, rs in runs.items()}
    kwargs = {"reps": reps, "confidence": confidence, "seed": seed}
    variants = stats.aggregate(scores, **kwargs)
    for name, rs in runs.items():
        variants[name]["scores"] = {f"seed_{r.seed}": s for r, s in zip(rs, scores[name], strict=True)}
    better = stats.probability_of_improvement(scores, names[0], **kwargs) if names else {}
    for name, p in better.items():
        p["verdict"] = verdict(p, min(len(scores[name]), len(scores[p["over"]])))
    return {
        "task": tasks[0] if tasks else None,
        "engine": dict(engine),
        "metric": metric.to_dict(),
        "variants": variants,
        "prob_improvement": better,
        "curves": _curves(runs, **kwargs),
        "bootstrap": bootstrap_info(**kwargs),
        "failed": [{"run": label, "error": error} for label, error in (failed or {}).items()],
    }


def bootstrap_info(*, reps: int, confidence: float = stats.CONFIDENCE, seed: int) -> dict[str, Any]:
    """The summary's ``bootstrap`` entry: the library and how its CIs were drawn."""
    return {"library": f"rliable {version('rliable')}", "method": "percentile, stratified over runs",
            "reps": reps, "confidence": confidence, "seed": seed}  # fmt: skip


def _curves(runs: Mapping[str, Sequence[RunRecord]], **kwargs) -> dict[str, dict[str, Any]]:
    """Each variant's curve on the evaluation points all its runs share."""
    values, frames = {}, {}
    for name, rs in runs.items():
        common = sorted(set.intersection(*(set(r.curve.frames) for r in rs))) if rs else []
        if common:
            frames[name] = common
            values[name] = [
                [dict(zip(r.curve.frames, r.curve.values, strict=True))[f] for f in common] for r in rs
            ]
    estimates = stats.curves(values, **kwargs)
    return {
        name: {"frames": frames[name], **estimates[name], "runs": len(values[name])} for name in estimates
    }


def write_summary(summary: Mapping[str, Any], out: str | Path) -> list[Path]:
    """``summary.json``, ``aggregate.png`` and ``curves.png`` in ``out``."""
    from hetplug_benchmarl.compare.plots import plot_summary

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "summary.json"
    path.write_text(json.dumps(summary, indent=1))
    return [path, *plot_summary(summary, out)]


def verdict(p: Mapping[str, Any], runs: int) -> str:
    """Whether P(improvement) ``p`` tells the variant from its reference, said honestly.

    Args:
        p: ``{"value", "ci", "over"}``.
        runs: the fewer runs of the two variants.
    """
    low, high = p["ci"]
    if low <= 0.5 <= high:
        return "not distinguishable from noise (the CI contains 0.5)"
    side = "better" if low > 0.5 else "worse"
    if runs < MIN_RUNS:
        return (
            f"{side} than {p['over']} in these runs, but {runs} runs are too few for the bootstrap to "
            f"measure the noise (it needs about {MIN_RUNS}): inconclusive"
        )
    return f"{side} than {p['over']} beyond noise (the CI excludes 0.5)"


def describe(summary: Mapping[str, Any]) -> list[str]:
    """Readable lines: each variant's IQM with its CI and P(improvement) with its verdict."""
    lines = [f"metric: {summary['metric']['description']}"]
    width = max((len(n) for n in summary["variants"]), default=0)
    for name, v in summary["variants"].items():
        if not v["runs"]:
            lines.append(f"  {name:<{width}}  no finished run")
            continue
        lines.append(
            f"  {name:<{width}}  IQM {v['iqm']:+.4f}  95% CI [{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}]  ({v['runs']} runs)"
        )
        p = summary["prob_improvement"].get(name)
        if p is not None:
            low, high = p["ci"]
            lines.append(
                f"  {'':<{width}}  P(improvement over {p['over']}) {p['value']:.2f} [{low:.2f}, {high:.2f}]: {p['verdict']}"
            )
    return lines
