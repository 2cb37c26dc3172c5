"""The experiments behind docs/results.md, and the page itself.

    python examples/results.py run                     # every experiment (resumable: rerun to finish)
    python examples/results.py run --only shppo-vs-happo --workers 2
    python examples/results.py page                    # docs/results.md from docs/results/*/summary.json

Most experiments are a ``hetplug compare`` grid. Two are runs of an example script, one
subprocess per variant and seed, scored and summarised with the compare package's rliable
statistics (``hetplug_benchmarl.compare.stats``): SHPPO's zero-shot team size
(``examples/zero_shot_team_size.py``) and LBS on Pursuit (``examples/lbs_pursuit.py``).
Every experiment has at least 5 seeds per variant. Runs go to ``results/<name>/`` (not
committed; a rerun skips the finished ones); each finished experiment's ``summary.json``
and plots are copied to ``docs/results/<name>/`` with a ``provenance.yaml`` (command, commit,
date), and the page is written from those files only: no number on it is typed by hand.
Results are reported as they come out, never tuned per seed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "results"
RUNS = ROOT / "results"
#: fewer finished runs than this per variant: the verdict is "inconclusive"
MIN_RUNS = 5


@dataclass(frozen=True)
class Experiment:
    """One reduced-scale test of one paper's claim: a ``hetplug compare`` grid."""

    name: str
    method: str
    claim: str
    """what the paper claims, in a sentence, with its setting"""
    scale: str
    """how this experiment departs from the paper's setting, and why"""
    argv: tuple[str, ...]
    """the ``hetplug compare`` arguments (without --seeds and --out); for a script experiment,
    the script's arguments shared by every run"""
    seeds: int = 5
    judged: tuple[str, ...] = ()
    """the comparisons (keys of :func:`comparisons`) the verdict rests on; default the first"""

    @property
    def command(self) -> str:
        """The command that reproduces the experiment."""
        return " ".join(
            ["hetplug", "compare", *self.argv, "--seeds", str(self.seeds), "--out", f"results/{self.name}"]
        )

    def execute(self, workers: int) -> int:
        """Run (or finish) the grid; compare writes ``results/<name>/summary.json`` and the plots."""
        out = RUNS / self.name
        argv = [*self.argv, "--seeds", str(self.seeds), "--workers", str(workers), "--out", str(out)]
        print(f"== {self.name}: hetplug compare {' '.join(argv)}", flush=True)
        return subprocess.call([sys.executable, "-m", "hetplug_benchmarl.cli", "compare", *argv])


@dataclass(frozen=True)
class ScriptExperiment(Experiment):
    """Runs of an example script, one subprocess per variant and seed, resumable: a run whose
    result file exists is skipped. ``argv`` is passed to every run."""

    script: str = ""
    variants: tuple[str, ...] = ()
    """the variants, the first being the reference of P(improvement)"""

    @property
    def command(self) -> str:
        return f"python examples/results.py run --only {self.name}"

    @property
    def run_command(self) -> str:
        """One run's command (what :meth:`execute` starts per variant and seed)."""
        return " ".join(
            ["python", self.script, *self.run_argv("VARIANT", "SEED", self.result_path("VARIANT", "SEED"))]
        )

    def result_path(self, variant: str, seed: int | str) -> Path:
        raise NotImplementedError

    def run_argv(self, variant: str, seed: int | str, path: Path) -> list[str]:
        raise NotImplementedError

    def summarise(self, results: Mapping[str, Mapping[int, dict]], failed: Mapping[str, str]) -> dict:
        """The summary dict from ``{variant: {seed: the run's result}}``."""
        raise NotImplementedError

    def load(self) -> dict[str, dict[int, dict]]:
        """The finished runs' results, ``{variant: {seed: result}}``."""
        results: dict[str, dict[int, dict]] = {v: {} for v in self.variants}
        for variant in self.variants:
            for seed in range(self.seeds):
                try:
                    results[variant][seed] = json.loads(self.result_path(variant, seed).read_text())
                except (OSError, ValueError):
                    pass
        return results

    def execute(self, workers: int) -> int:
        """Run the missing runs (``workers`` at a time), then write the summary and its plot."""
        out = RUNS / self.name
        runs = [(v, s) for s in range(self.seeds) for v in self.variants]  # seed-major, as compare
        done = self.load()
        todo = [(v, s) for v, s in runs if s not in done[v]]
        print(f"== {self.name}: {len(runs)} runs of {self.script} ({len(runs) - len(todo)} already in {out}, "
              f"{len(todo)} to run); one run: {self.run_command}", flush=True)  # fmt: skip
        start, failed = time.perf_counter(), {}

        def one(job: tuple[str, int]) -> tuple[str, int, int]:
            variant, seed = job
            path = self.result_path(variant, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
            with open(path.parent / f"{path.stem}.log", "w") as log:
                code = subprocess.call([sys.executable, str(ROOT / self.script), *self.run_argv(variant, seed, path)],
                                       stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)  # fmt: skip
            return variant, seed, code

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for i, (variant, seed, code) in enumerate(pool.map(one, todo), 1):
                label = f"{variant} seed {seed}"
                if code:
                    log = self.result_path(variant, seed)
                    failed[label] = f"exit status {code} (log: {log.parent / (log.stem + '.log')})"
                print(f"[{i}/{len(todo)}] {label}: {'failed, ' + failed[label] if code else 'done'} "
                      f"| {time.perf_counter() - start:.0f} s elapsed", flush=True)  # fmt: skip
        summary = self.summarise(self.load(), failed)
        write(summary, out)
        return 1 if failed else 0


@dataclass(frozen=True)
class ZeroShotExperiment(ScriptExperiment):
    """``examples/zero_shot_team_size.py`` per model and seed: trained at one team size,
    evaluated at several without training; scored per evaluated team size."""

    script: str = "examples/zero_shot_team_size.py"
    variants: tuple[str, ...] = ("mlp", "shppo")
    eval_agents: tuple[int, ...] = (2, 3, 4)
    train_agents: int = 3

    def result_path(self, variant, seed) -> Path:
        return RUNS / self.name / "runs" / str(variant) / f"seed_{seed}.json"

    def run_argv(self, variant, seed, path) -> list[str]:
        sizes = [str(n) for n in self.eval_agents]
        return ["--model", str(variant), "--seed", str(seed), "--train-agents", str(self.train_agents),
                "--eval-agents", *sizes, *self.argv, "--out", str(path.relative_to(ROOT) if path.is_absolute() else path)]  # fmt: skip

    def summarise(self, results, failed) -> dict:
        return zero_shot_summary(results, self.eval_agents, self.train_agents, failed=failed)


@dataclass(frozen=True)
class LbsExperiment(ScriptExperiment):
    """``examples/lbs_pursuit.py --methods VARIANT`` per variant and seed (same seed: same
    environment seeds and initial networks across variants)."""

    script: str = "examples/lbs_pursuit.py"
    variants: tuple[str, ...] = ("independent", "ps", "lbs")
    frames: int = 20_000

    def result_path(self, variant, seed) -> Path:
        return RUNS / self.name / "runs" / str(variant) / f"seed_{seed}" / "results.json"

    def run_argv(self, variant, seed, path) -> list[str]:
        folder = path.parent.relative_to(ROOT) if path.is_absolute() else path.parent
        return ["--methods", str(variant), "--seed", str(seed), "--frames", str(self.frames), *self.argv, "--out", str(folder)]  # fmt: skip

    def summarise(self, results, failed) -> dict:
        runs = {v: {s: r["results"][v] for s, r in by_seed.items()} for v, by_seed in results.items()}
        return lbs_summary(runs, self.frames, failed=failed)


#: HAPPO without and with SHPPO on vmas/navigation (the SHPPO experiments' grid)
HAPPO_NAVIGATION = ("--task", "vmas/navigation", "--algorithm", "happo", "--plugins", "none", "shppo")
#: 60k frames with Table V's learning rate and gamma
TABLE_V_60K = ("--frames", "60000", "--set", "experiment.lr=0.0005", "--set", "experiment.gamma=0.95")

EXPERIMENTS = [
    Experiment(
        name="shep-battle",
        method="SHEP",
        claim=(
            "SHEP's heterogeneity-driven priorities, intrinsic reward and Group-HER speed up learning and raise the "
            "final win rate of the base algorithm in large-scale battles (MAgent, SMAC 27m_vs_30m)."
        ),
        scale=(
            "SHEP's own setting, reduced: MAgent2 battle 30 v 30 on a 30 x 30 map against a fixed greedy team "
            "(hetplug's magent/battle), IQL, 30k frames per run instead of millions, 20k frames of replay; SHEP with "
            "its defaults (Algorithm 1), positions and opponents from the grid world, its grid over the map."
        ),
        argv=(
            "--task",
            "magent/battle",
            "--algorithm",
            "iql",
            "--plugins",
            "none",
            "shep",
            "--frames",
            "30000",
            "--envs",
            "10",
            "--updates",
            "50",
            "--memory",
            "20000",
            "--eval-every",
            "5",
            "--set",
            "positions.key=position",
            "--set",
            "opponents.group=blue",
            "--set",
            "opponents.key=position",
            "--set",
            "shep.grid_low=[0,0]",
            "--set",
            "shep.grid_high=[30,30]",
        ),  # fmt: skip
    ),
    Experiment(
        name="shep-navigation",
        method="SHEP",
        claim=(
            "SHEP's heterogeneity-driven priorities, intrinsic reward and Group-HER speed up learning and raise the "
            "final win rate of the base algorithm in large-scale battles (MAgent, SMAC 27m_vs_30m)."
        ),
        scale=(
            "Outside SHEP's domain on purpose: vmas/navigation (3 agents, dense reward, no opponents, cohesion beside "
            "the point), IQL, 60k frames per run instead of millions; SHEP with its defaults (Algorithm 1)."
        ),
        argv=(
            "--task",
            "vmas/navigation",
            "--algorithm",
            "iql",
            "--plugins",
            "none",
            "shep",
            "--frames",
            "60000",
        ),
    ),
    LbsExperiment(
        name="lbs-pursuit",
        method="LBS",
        claim=(
            "Independent DQN learners that share a large batch of experience, each keeping for its own update the "
            "transitions with the largest |TD| for it (LBS), end training with a higher return than independent DQN "
            "(IDQN) and than parameter sharing (PS) on SISL Pursuit (8 pursuers, 30 evaders, per-agent rewards; "
            "800k steps, 10 seeds; Fig. 2)."
        ),
        scale=(
            "Table 1's environment (16 x 16 grid, 8 pursuers, 30 evaders, per-agent rewards, 500 cycles, its reward "
            "values) and DQN values (learning rate 1.6e-4, B = 32, epsilon 0.1 to 0.001, target sync every 1000 "
            "steps, K = 8 x B), 10 seeds as the paper, but 20k environment steps per run instead of 800k, an MLP "
            "(147-64-64-5) instead of the CNN, 20k transitions per agent buffer instead of 120k, one update every 4 "
            "steps after 1000 (the paper does not say), epsilon decayed over the first 20% of the steps: "
            "examples/lbs_pursuit.py's reduced defaults, which fit this machine (about 4 min per run on one core). "
            "The verdict needs LBS to beat both IDQN and PS."
        ),
        argv=(),
        seeds=10,
        judged=("lbs", "lbs|ps"),
    ),
    Experiment(
        name="hetdps-navigation",
        method="HetDPS",
        claim=(
            "Dynamic parameter sharing driven by heterogeneity distances matches or beats full sharing and no "
            "sharing (its MPE/SMAC tasks), by regrouping agents whose behaviour differs."
        ),
        scale=(
            "vmas/navigation (3 agents with their own goals), IQL on hetplug's slot model for both arms (only the "
            "regrouping differs), 60k frames, regrouping every 10 iterations."
        ),
        argv=(
            "--task",
            "vmas/navigation",
            "--algorithm",
            "iql",
            "--plugins",
            "none",
            "hetdps",
            "--frames",
            "60000",
            "--set",
            "hetdps.interval=10",
        ),  # fmt: skip
    ),
    Experiment(
        name="shppo-vs-happo",
        method="SHPPO",
        claim=(
            "SHPPO (HAPPO with all agents sharing one actor whose HeteLayer weights are generated from each agent's "
            "latent) beats its backbone HAPPO (share), HAPPO with one shared actor (Table I: SMAC MMM2 and 8m_vs_9m, "
            "GRF 3_vs_1_with_keeper and counterattack_easy; 5 seeds, 20-25M steps)."
        ),
        scale=(
            "vmas/navigation (3 agents, dense reward) instead of SMAC/GRF, 60k frames per run instead of 20M, 5 seeds "
            "as the paper. Both arms are hetplug's HAPPO (sequential per-agent updates with the M factor, one shared "
            "actor): HAPPO (share) on BenchMARL's MLP actor (256 x 256, feed-forward) against HAPPO + SHPPO's "
            "latent learning on hetplug's SHPPO actor (Table IV: 64-wide, GRU, latent dim 3). Table V's actor/critic "
            "learning rate 5e-4 and gamma 0.95 for both arms (the SHPPO losses' own rates are Table V's defaults); "
            "the rest is compare's on-policy schedule (1000 frames per iteration, minibatches of 200, 8 epochs) "
            "instead of HARL's one minibatch x 5 epochs, and navigation's 100 steps per episode instead of 160."
        ),
        argv=(*HAPPO_NAVIGATION, "--model", "mlp", "shppo", *TABLE_V_60K),
    ),
    ZeroShotExperiment(
        name="shppo-zero-shot",
        method="SHPPO",
        claim=(
            "A SHPPO policy transfers zero-shot to team sizes it was not trained with (one agent fewer or more) "
            "better than the parameter-shared baselines, HAPPO (share) among them (Tables II-III: SMAC MMM2 and "
            "8m_vs_9m, GRF 3_vs_1_with_keeper and counterattack_easy series; 5 seeds)."
        ),
        scale=(
            "vmas/navigation (its observations do not depend on the team size, like the paper's modified tasks): "
            "trained with 3 agents for 120k frames (20 iterations) instead of 20M (examples/zero_shot_team_size.py's "
            "default is 1.2M; 120k makes the 10 runs fit in about an hour on 2 cores), then copied without training "
            "into teams of 2, 3 "
            "and 4 and evaluated on 50 deterministic episodes each. HAPPO (share) on BenchMARL's MLP actor against "
            "HAPPO + SHPPO on hetplug's SHPPO actor (Table IV sizes, GRU; mean-pooled InferenceNet is not needed at "
            "execution). Table V's learning rate 5e-4 and gamma 0.95, HARL's 5 epochs, 6000 frames per iteration "
            "(60 environments, minibatches of 400); navigation's 100 steps per episode instead of 160. The verdict "
            "rests on the unseen sizes 2 and 4; size 3 is the training task."
        ),
        argv=("--frames", "120000"),
        judged=("shppo n=2", "shppo n=4"),
    ),
    Experiment(
        name="shppo-latent-ablation",
        method="SHPPO",
        claim=(
            "SHPPO's latent learning is what makes its heterogeneous layer work: with the latents zeroed (no latent "
            "learning) performance drops on SMAC MMM2 and 8m_vs_9m (Section V-E, Fig. 7)."
        ),
        scale=(
            "The ablation at the scale of shppo-vs-happo (vmas/navigation, 60k frames, Table V's lr and gamma): "
            "HAPPO on hetplug's SHPPO actor without the shppo plugin (no latent losses: the LatentNet learns only "
            "through the PPO loss) against HAPPO + SHPPO."
        ),
        argv=(*HAPPO_NAVIGATION, "--model", "shppo", "shppo", *TABLE_V_60K),
    ),
]


# ------------------------------------------------------------------ summaries of script experiments
def _engine(workers: int | None = None) -> dict[str, Any]:
    return {"name": "subprocess", "address": None, "workers": workers}


def zero_shot_summary(
    results: Mapping[str, Mapping[int, Mapping[str, Any]]],
    sizes: Sequence[int],
    train_agents: int,
    *,
    failed: Mapping[str, str] | None = None,
    reps: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """summary.json of the zero-shot experiment, in compare's schema with one "variant" per model
    and evaluated team size (``shppo n=4``), P(improvement) of each model over the first at the
    same team size, all from the compare package's rliable functions.

    Args:
        results: ``{model: {seed: zero_shot_team_size.main's result}}``, the baseline model first.
        sizes: the evaluated team sizes.
        train_agents: the team size trained with.
    """
    from hetplug_benchmarl.compare import stats
    from hetplug_benchmarl.compare.summary import bootstrap_info, verdict

    kwargs = {"reps": reps or stats.REPS, "seed": seed}
    models = list(results)
    scores, seeds = {}, {}
    for n in sizes:
        for model in models:
            runs = sorted(results[model].items())
            scores[f"{model} n={n}"] = [float(r["eval"][str(n)]) for _, r in runs]
            seeds[f"{model} n={n}"] = [s for s, _ in runs]
    variants = stats.aggregate(scores, **kwargs)
    for name, v in variants.items():
        v["scores"] = {f"seed_{s}": x for s, x in zip(seeds[name], scores[name], strict=True)}
    better = {}
    for n in sizes:
        ref = f"{models[0]} n={n}"
        for model in models[1:]:
            name = f"{model} n={n}"
            p = stats.probability_of_improvement({name: scores[name], ref: scores[ref]}, ref, **kwargs).get(
                name
            )
            if p is not None:
                p["verdict"] = verdict(p, min(len(scores[name]), len(scores[ref])))
                better[name] = p
    frames = sorted({int(r["frames"]) for by_seed in results.values() for r in by_seed.values()})
    return {
        "task": "vmas/navigation",
        "kind": "zero-shot team size",
        "engine": _engine(),
        "metric": {
            "key": "eval",
            "last_fraction": None,
            "description": (
                f"mean episode reward (per episode: the sum over steps of the agents' mean reward) over the "
                f"deterministic evaluation episodes of the policy trained with {train_agents} agents, copied "
                f"without training into a team of n agents"
            ),
        },  # fmt: skip
        "train_agents": train_agents,
        "eval_agents": list(sizes),
        "frames": frames[0] if len(frames) == 1 else frames,
        "models": {name: name.split(" n=")[0] for name in variants},
        "variants": variants,
        "prob_improvement": better,
        "curves": {},
        "bootstrap": bootstrap_info(**kwargs),
        "failed": [{"run": label, "error": error} for label, error in (failed or {}).items()],
    }


def binned_curves(
    runs: Sequence[Mapping[str, Any]], frames: int, width: int = 1000
) -> tuple[list[int], list[list[float]]]:
    """Training-episode returns on a common grid: at each multiple of ``width``, the mean return
    of the episodes that ended in the ``width`` frames before it (the previous value when none
    did). Leading points where a run has no episode yet are dropped."""
    points = list(range(width, frames + 1, width))
    values = []
    for r in runs:
        row, last = [], None
        for f in points:
            inside = [
                x
                for x, end in zip(r["episode_returns"], r["episode_end_frames"], strict=True)
                if f - width < end <= f
            ]
            last = sum(inside) / len(inside) if inside else last
            row.append(last)
        values.append(row)
    start = max(
        (
            row.index(next(x for x in row if x is not None))
            for row in values
            if any(x is not None for x in row)
        ),
        default=len(points),
    )
    return points[start:], [row[start:] for row in values]


def lbs_summary(
    runs: Mapping[str, Mapping[int, Mapping[str, Any]]],
    frames: int,
    *,
    also: Sequence[tuple[str, str]] = (("lbs", "ps"),),
    failed: Mapping[str, str] | None = None,
    reps: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """summary.json of LBS on Pursuit in compare's schema (:func:`build_summary` on the runs'
    training episodes): each variant's IQM and CI, P(improvement) over the first variant, and
    the ``also`` pairs as ``comparisons``.

    Args:
        runs: ``{variant: {seed: lbs_pursuit's run_method result}}``, the reference variant first.
        frames: environment steps per run.
    """
    from hetplug_benchmarl.compare import stats
    from hetplug_benchmarl.compare.metric import Curve, Metric, RunRecord
    from hetplug_benchmarl.compare.summary import build_summary, verdict

    kwargs = {"reps": reps or stats.REPS, "seed": seed}
    records = [
        RunRecord("pettingzoo", "pursuit", variant, s, Curve(tuple(r["episode_end_frames"]), tuple(r["episode_returns"])))
        for variant, by_seed in runs.items() for s, r in sorted(by_seed.items()) if r["episode_returns"]
    ]  # fmt: skip
    summary = build_summary(
        records, Metric("return", 0.25), engine=_engine(), order=list(runs), failed=failed, **kwargs
    )
    summary["metric"].update(
        label="training-episode return (sum over the pursuers)",
        description=(
            "mean return of the training episodes (each pursuer's rewards summed over the episode, summed over "
            "the 8 pursuers: the paper's 'sum of rewards per episode') that end in the last quarter of the "
            "run's steps"
        ),
    )
    scores = {v: list(summary["variants"][v]["scores"].values()) for v in runs}
    summary["comparisons"] = []
    for variant, over in also:
        p = stats.probability_of_improvement(
            {variant: scores[variant], over: scores[over]}, over, **kwargs
        ).get(variant)
        if p is not None:
            p["verdict"] = verdict(p, min(len(scores[variant]), len(scores[over])))
            summary["comparisons"].append({"variant": variant, **p})
    curves = {}
    for variant, by_seed in runs.items():
        points, values = binned_curves([r for _, r in sorted(by_seed.items())], frames)
        if points and values:
            curves[variant] = {
                "frames": points,
                **stats.curves({variant: values}, **kwargs)[variant],
                "runs": len(values),
            }
    summary["curves"] = curves
    summary["frames"] = frames
    return summary


def write(summary: Mapping[str, Any], out: Path) -> None:
    from hetplug_benchmarl.compare.summary import describe, write_summary

    paths = write_summary(summary, out)
    print("\n".join(["", *describe(summary), f"written: {', '.join(str(p) for p in paths)}"]))


# ------------------------------------------------------------------ running and publishing
def copy_png(src: Path, dst: Path, colors: int = 64) -> None:
    """Copy a plot as a palette PNG (about a third of matplotlib's RGBA size)."""
    try:
        from PIL import Image
    except ImportError:  # matplotlib brings Pillow; without it, copy as is
        shutil.copy2(src, dst)
        return
    image = Image.open(src).convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    image.save(dst, optimize=True)


def publish(exp: Experiment) -> None:
    """Copy ``results/<name>/`` summary and plots to ``docs/results/<name>/`` with a provenance.yaml."""
    out, target = RUNS / exp.name, DOCS / exp.name
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(out / "summary.json", target / "summary.json")
    for name in ("aggregate.png", "curves.png"):
        if (out / name).exists():
            copy_png(out / name, target / name)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    provenance = {"command": exp.command, "commit": commit.stdout.strip(),
                  "date": datetime.now(timezone.utc).strftime("%Y-%m-%d")}  # fmt: skip
    (target / "provenance.yaml").write_text("".join(f"{k}: {v}\n" for k, v in provenance.items()))


def run(names: list[str] | None, workers: int) -> int:
    """Run (or finish) the experiments and copy their summaries into docs/results/."""
    status = 0
    for exp in EXPERIMENTS:
        if names and exp.name not in names:
            continue
        code = exp.execute(workers)
        if code:
            status = code
            continue
        publish(exp)
    return status


# ------------------------------------------------------------------ the page
def comparisons(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every P(improvement) of a summary, ``{key: {"variant", "over", "value", "ci", "verdict"}}``:
    over the first variant keyed by the variant, the summary's other ``comparisons`` by
    ``VARIANT|OVER``."""
    found = {name: {"variant": name, **p} for name, p in summary["prob_improvement"].items()}
    found.update({f"{c['variant']}|{c['over']}": dict(c) for c in summary.get("comparisons", [])})
    return found


def verdict(summary: Mapping[str, Any], judged: Sequence[str] = ()) -> tuple[str, str]:
    """(verdict, reason): *reproduced* when every judged comparison (default: the first) is better
    beyond noise (its P(improvement) CI above 0.5) with at least MIN_RUNS runs on each side."""
    every = comparisons(summary)
    keys = list(judged) or list(every)[:1]
    if not keys or any(k not in every for k in keys):
        return "inconclusive", "no finished runs to compare"
    parts, runs, sides = [], [], []
    for key in keys:
        p = every[key]
        low, high = p["ci"]
        runs.append(min(summary["variants"][p["variant"]]["runs"], summary["variants"][p["over"]]["runs"]))
        sides.append("better" if low > 0.5 else "worse" if high < 0.5 else "no difference")
        reading = {"better": "better beyond noise", "worse": "worse beyond noise",
                   "no difference": "no difference beyond noise"}[sides[-1]]  # fmt: skip
        if runs[-1] < MIN_RUNS:  # the bootstrap cannot measure the noise of so few runs
            reading = "too few runs to judge"
        parts.append(
            f"P({p['variant']} > {p['over']}) {p['value']:.2f}, 95% CI [{low:.2f}, {high:.2f}]: {reading}"
        )
    reason = "; ".join(parts)
    if min(runs) < MIN_RUNS:
        return "inconclusive", f"only {min(runs)} finished runs per variant ({MIN_RUNS} needed); {reason}"
    if all(side == "better" for side in sides):
        return "reproduced", reason
    return "not reproduced at this scale", reason


def _interval(low: float, high: float) -> str:
    return f"[{low:+.4f}, {high:+.4f}]"


def section(exp: Experiment) -> list[str]:
    """The page's section of one experiment, from its committed files."""
    lines = [f"## {exp.method}: {exp.name}", "", f"**The paper's claim.** {exp.claim}", "",
             f"**This experiment.** {exp.scale}", "", "**Reproduce** (resumable: rerun to finish):", "",
             f"    {exp.command}", ""]  # fmt: skip
    if isinstance(exp, ScriptExperiment):
        lines += [f"It starts one run per variant ({', '.join(exp.variants)}) and seed (0 to {exp.seeds - 1}):", "",
                  f"    {exp.run_command}", ""]  # fmt: skip
    summary_path = DOCS / exp.name / "summary.json"
    if not summary_path.exists():
        return [*lines, "**Not run yet.** The command above produces it.", ""]
    summary = json.loads(summary_path.read_text())
    provenance = (DOCS / exp.name / "provenance.yaml").read_text().strip().replace("\n", "; ")
    models = summary.get("models", {})
    lines += [f"**Score of a run:** {summary['metric']['description']}.", "",
              "| variant | model | runs | IQM | 95% CI |", "|---|---|---|---|---|"]  # fmt: skip
    for name, v in summary["variants"].items():
        if v["runs"]:
            lines.append(
                f"| {name} | {models.get(name, '-')} | {v['runs']} | {v['iqm']:+.4f} | {_interval(*v['ci'])} |"
            )
        else:
            lines.append(f"| {name} | {models.get(name, '-')} | 0 | - | - |")
    lines += ["", "| P(improvement) | value | 95% CI | reading |", "|---|---|---|---|"]
    for p in comparisons(summary).values():
        lines.append(
            f"| {p['variant']} > {p['over']} | {p['value']:.2f} | [{p['ci'][0]:.2f}, {p['ci'][1]:.2f}] | {p['verdict']} |"
        )
    if summary.get("failed"):
        lines += [
            "",
            "Failed runs (not in the statistics): "
            + "; ".join(f"{f['run']} ({f['error']})" for f in summary["failed"]),
        ]
    word, reason = verdict(summary, exp.judged)
    lines += [
        "",
        f"**Verdict: {word}** ({reason}).",
        "",
        f"![aggregate](results/{exp.name}/aggregate.png)",
        "",
    ]
    if (DOCS / exp.name / "curves.png").exists():
        lines += [f"![curves](results/{exp.name}/curves.png)", ""]
    return [*lines, f"<sub>{provenance}</sub>", ""]


def page() -> str:
    """docs/results.md from the committed summaries (and a note for experiments not run yet)."""
    lines = [
        "# Results: does each method help, at a scale this project can run?",
        "",
        "Generated by `python examples/results.py page` from `docs/results/*/summary.json`; no number here is "
        "typed by hand. Most experiments are `hetplug compare` grids ([compare.md](compare.md)); SHPPO's zero-shot "
        "team size and LBS on Pursuit are runs of their example scripts, one per variant and seed, summarised with "
        "the same functions. Every variant has at least 5 seeds, every seed that ran is reported, and the "
        "statistics are rliable's: IQM of the run scores, 95% stratified bootstrap CIs, probability of "
        "improvement (P(a run of X scores higher than a run of Y); 0.5 = no difference). Each experiment states "
        "how a run is scored. Verdicts: *reproduced* (the method beats its baseline beyond noise: the P(improvement) "
        "CI lies above 0.5, in every comparison the claim makes), *not reproduced at this scale* (no difference "
        "beyond noise, or worse), *inconclusive* (fewer than 5 finished runs per variant). The scale is far below "
        "the papers': a verdict here says what these runs show, not what the method can do at its paper's scale.",
        "",
    ]
    for exp in EXPERIMENTS:
        lines += section(exp)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["run", "page"])
    p.add_argument("--only", nargs="+", help="experiment names (default: all)")
    p.add_argument("--workers", type=int, default=2, help="runs at the same time")
    args = p.parse_args(argv)
    unknown = sorted(set(args.only or ()) - {e.name for e in EXPERIMENTS})
    if unknown:
        p.error(
            f"unknown experiment(s) {', '.join(unknown)}; choose from {', '.join(e.name for e in EXPERIMENTS)}"
        )
    code = run(args.only, args.workers) if args.what == "run" else 0
    (ROOT / "docs" / "results.md").write_text(page())
    print(f"wrote {ROOT / 'docs' / 'results.md'}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
