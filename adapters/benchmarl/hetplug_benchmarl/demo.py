"""``hetplug demo``: short real BenchMARL trainings on VMAS with and without hetplug, several
seeds each, judged with the statistics of ``hetplug compare`` (Ray, rliable).

    hetplug demo                                    # the suite: three comparisons (below)
    hetplug demo --algorithm iql --plugins shep     # one comparison
    hetplug demo --algorithm qmix --plugins per --frames 30000 --seeds 5
    hetplug demo --task vmas/balance --device cuda

The suite (no ``--algorithm``/``--plugins``) runs three comparisons, each with ``--seeds``
runs per arm and the same settings, only the plugins differing: IQL with and without SHEP,
IQL with and without HetDPS (both on HetDPS's slot model), and MAPPO with and without
SHPPO's latent training (both on SHPPO's actor). Every run is a Ray task; finished runs
are kept, so the same command resumes an interrupted demo. The report goes to ``--out``
(default runs/demo):

* per comparison, ``<algorithm>-<plugins>/``: ``summary.json`` (IQM with 95% bootstrap CIs
  and P(improvement), rliable), ``aggregate.png``, ``curves.png`` and the runs' BenchMARL
  jsons under ``runs/``;
* ``curves.png``: the comparisons side by side, IQM over frames with CI bands;
* ``hetplug.png`` (SHEP's metrics over training), ``hetdps.png`` (the distance matrix and
  each agent's network over time), ``shppo_latents.png`` (latent means of one episode);
* ``report.json``: the summaries and every number plotted.

The verdicts say plainly whether a difference is distinguishable from noise: a demo's few
short runs usually are not.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from benchmarl.algorithms import (
    IddpgConfig,
    IppoConfig,
    IqlConfig,
    IsacConfig,
    MaddpgConfig,
    MappoConfig,
    MasacConfig,
    QmixConfig,
    VdnConfig,
)

from hetplug_benchmarl.algorithms import HappoConfig

#: off-policy algorithms the adapter's prioritisers serve, by command-line name
ALGORITHMS = {
    "iql": IqlConfig,
    "vdn": VdnConfig,
    "qmix": QmixConfig,
    "masac": MasacConfig,
    "isac": IsacConfig,
    "maddpg": MaddpgConfig,
    "iddpg": IddpgConfig,
}
#: on-policy algorithms (the buffer holds the current rollout); happo is hetplug's
ON_POLICY = {"mappo": MappoConfig, "ippo": IppoConfig, "happo": HappoConfig}
#: the default demo: one comparison per method that needs no external data
SUITE = [("iql", ["shep"]), ("iql", ["hetdps"]), ("mappo", ["shppo"])]
#: frames per run: the suite's 3 comparisons x 2 arms x 3 seeds fit in minutes on 2 CPU cores
SUITE_FRAMES, SINGLE_FRAMES = 12_000, 30_000


def model_for(plugins: list[str]) -> str:
    """The model both arms of a comparison use (a plugin that needs its own model gets it
    for the baseline too, so only the plugin differs)."""
    return "slot" if "hetdps" in plugins else "shppo" if "shppo" in plugins else "mlp"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="hetplug demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--task", default="vmas/navigation", help="family/task, e.g. vmas/balance (default vmas/navigation)"
    )
    p.add_argument(
        "--algorithm",
        help=f"one comparison with this algorithm: {', '.join(sorted({**ALGORITHMS, **ON_POLICY}))}",
    )
    p.add_argument("--plugins", nargs="+", help="hetplug plugins of the second arm (default: the suite)")
    p.add_argument("--seeds", type=int, default=3, help="runs per arm (default 3)")
    p.add_argument(
        "--frames",
        type=int,
        help=f"environment frames per run (default {SUITE_FRAMES} in the suite, {SINGLE_FRAMES} for one comparison)",
    )
    p.add_argument("--envs", type=int, default=20, help="vectorised VMAS environments")
    p.add_argument("--frames-per-batch", type=int, default=1_000, help="frames collected per iteration")
    p.add_argument("--updates", type=int, default=40, help="optimiser steps per iteration")
    p.add_argument("--workers", type=int, default=2, help="runs at the same time (local Ray CPUs)")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="PLUGIN.OPTION=VALUE",
        help="a plugin option, e.g. --set shep.group_her=false (repeatable)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--out", default="runs/demo")
    args = p.parse_args(argv)  # fmt: skip
    args.suite = args.algorithm is None and args.plugins is None
    args.algorithm = args.algorithm or "iql"
    args.plugins = args.plugins or ["shep"]
    args.frames = args.frames or (SUITE_FRAMES if args.suite else SINGLE_FRAMES)
    args.comparisons = SUITE if args.suite else [(args.algorithm, list(args.plugins))]
    if "/" not in args.task:
        args.task = f"vmas/{args.task}"
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


def grids(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """``[(folder name, Grid)]``, one per comparison; raises ``SpecError`` before any run."""
    from hetplug_benchmarl.compare.spec import Settings, make_grid

    settings = Settings(frames=args.frames, frames_per_batch=args.frames_per_batch, envs=args.envs,
                        updates=args.updates, device=args.device)  # fmt: skip
    out = []
    for algorithm, plugins in args.comparisons:
        sets = [s for s in args.sets if s.split(".", 1)[0] in plugins]
        grid = make_grid(args.task, algorithm, ["none", "+".join(plugins)], seeds=args.seeds, sets=sets,
                         model=model_for(plugins), settings=settings)  # fmt: skip
        out.append((f"{algorithm}-{'+'.join(plugins)}", grid))
    return out


# ------------------------------------------------------------------ one run (a Ray task)
def plugin_outputs(experiment, callback) -> dict[str, Any]:
    """What the demo draws besides the learning curves: hetplug's logged metrics per
    training iteration, HetDPS's regroupings and distances, the stored priorities, and
    SHPPO's latent means over one evaluation episode."""
    if callback is None:
        return {}
    out: dict[str, Any] = {
        "frames_per_iteration": experiment.config.collected_frames_per_batch(experiment.on_policy)
    }
    group = next(iter(experiment.group_map))
    out["metrics"] = {}
    for update, scalars in callback.log.rows.get(group, []):
        for name, value in scalars.items():
            out["metrics"].setdefault(name, []).append([update, value])
    out["regroupings"] = [[u, list(a)] for u, a in callback.log.regroupings(group)]
    out["distances"] = [d.tolist() for d in callback.log.distances(group)]
    latest = callback.log.latest.get(group, {})
    priorities = [v for k, v in latest.items() if k.endswith("/priorities")]
    if priorities:
        out["priorities"] = priorities[0].float().cpu().tolist()
    from hetplug_benchmarl.wiring.shppo import shppo_models

    if shppo_models(experiment, group):
        out["latent_means"] = _episode_latents(experiment, group)
    return out


def _episode_latents(exp, group: str) -> list:
    """``[T, N, L]`` latents of one deterministic evaluation episode (first environment):
    what the SHPPO model acted with, the means mu when it does not explore."""
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    from hetplug_benchmarl.models import LATENT_KEY

    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        rollout = exp.test_env.rollout(max_steps=exp.max_steps, policy=exp.policy, auto_cast_to_device=True)
    mu = rollout.get((group, LATENT_KEY))
    mu = mu[0] if mu.dim() == 4 else mu  # vectorised envs: the first one
    return mu.cpu().tolist()


def demo_run(run) -> dict[str, Any]:
    """One run of the demo: ``hetplug compare``'s run, plus :func:`plugin_outputs`."""
    from hetplug_benchmarl.compare.run import run_one

    return run_one(run, outputs=plugin_outputs)


# ------------------------------------------------------------------ the demo
def main(argv: list[str] | None = None) -> int:
    from hetplug_benchmarl.compare import engine as ray_engine
    from hetplug_benchmarl.compare import store
    from hetplug_benchmarl.compare.engine import Engine, EngineError
    from hetplug_benchmarl.compare.metric import Metric
    from hetplug_benchmarl.compare.run import check
    from hetplug_benchmarl.compare.spec import SpecError
    from hetplug_benchmarl.compare.summary import build_summary, describe, write_summary

    args = parse_args(argv)
    out = Path(args.out)
    try:
        comparisons = grids(args)
        engine = Engine(workers=args.workers, gpus_per_run=0.25 if args.device == "cuda" else 0.0)
        for name, grid in comparisons:
            for run in {r.variant: r for r in grid.runs()}.values():
                check(run)
            store.check_configs(out / name, grid.runs())
    except (SpecError, EngineError) as err:
        print(f"hetplug demo: error: {err}", file=sys.stderr)
        return 2
    jobs = {f"{name}: {run.label}": (name, run) for name, grid in comparisons for run in grid.runs()}
    todo = {label: job for label, job in jobs.items() if not store.is_finished(out / job[0], job[1])}
    print(f"hetplug demo: {len(comparisons)} comparison(s) x 2 arms x {args.seeds} seeds = {len(jobs)} runs on "
          f"{args.task}, {args.frames} frames each ({len(jobs) - len(todo)} already in {out}, {len(todo)} to run, "
          f"{args.workers} at a time)", flush=True)  # fmt: skip
    start = time.perf_counter()
    if todo:
        started = ray_engine.connect(engine, need_gpu=args.device == "cuda")

        def on_result(label: str, result: dict) -> str:
            name, run = todo[label]
            store.write_result(out / name, run, result["json"])
            store.write_outputs(out / name, run, result.get("outputs", {}))
            return f"training {result['seconds']:.0f} s"

        def on_error(label: str, text: str, final: bool) -> None:
            store.write_error(out / todo[label][0], todo[label][1], text)

        try:
            report = ray_engine.run_tasks(demo_run, {k: run for k, (_, run) in todo.items()}, engine,
                                          on_result=on_result, on_error=on_error)  # fmt: skip
        finally:
            ray_engine.shutdown(started)
        if report.failed:
            print(f"hetplug demo: {len(report.failed)} run(s) failed; the same command runs them again",
                  file=sys.stderr)  # fmt: skip
            return 1
    metric = Metric()
    results = []
    for (algorithm, plugins), (name, grid) in zip(args.comparisons, comparisons, strict=True):
        runs = grid.runs()
        summary = build_summary(store.load_records(out / name, runs, metric.key), metric, engine=engine.info(),
                                order=[v.name for v in grid.variants])  # fmt: skip
        summary["frames"] = args.frames
        write_summary(summary, out / name)
        outputs = {
            f"seed_{r.seed}": store.read_outputs(out / name, r) or {} for r in runs if r.variant.plugins
        }
        results.append({"name": name, "algorithm": algorithm, "plugins": plugins, "model": grid.model,
                        "summary": summary, "outputs": outputs})  # fmt: skip
    report_json = write_report(args, results, out, seconds=time.perf_counter() - start)
    print(f"\nreport written to {out}/ ({', '.join(sorted(p.name for p in out.glob('*.png')))}, report.json)")
    for result in report_json["comparisons"]:
        print(f"\n{result['algorithm']} +/- {'+'.join(result['plugins'])} ({result['model']} model, "
              f"{args.seeds} seeds per arm):")  # fmt: skip
        for line in describe(result["summary"]):
            print("  " + line)
    return 0


# ------------------------------------------------------------------ report and figures
def write_report(args: argparse.Namespace, results: list[dict[str, Any]], out: Path, seconds: float) -> dict:
    """``report.json`` and the demo's figures (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _plot_curves(args, results, out / "curves.png", plt)
    for result in results:
        outputs = result["outputs"].get("seed_0") or next(iter(result["outputs"].values()), {})
        if "priorities" in outputs:
            _plot_metrics(outputs, out / "hetplug.png", plt)
        if outputs.get("regroupings"):
            _plot_hetdps(outputs, out / "hetdps.png", plt)
        if "latent_means" in outputs:
            _plot_latents(outputs["latent_means"], out / "shppo_latents.png", plt)
    report = {"task": args.task, "frames": args.frames, "seeds": args.seeds, "device": args.device,
              "seconds": seconds, "comparisons": results}  # fmt: skip
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report


def _plot_curves(args, results, path: Path, plt) -> None:
    """One panel per comparison: IQM of the evaluation return over frames, 95% CI bands."""
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2), squeeze=False)
    for ax, result in zip(axes[0], results, strict=True):
        for i, (name, c) in enumerate(result["summary"].get("curves", {}).items()):
            ax.plot(
                c["frames"],
                c["iqm"],
                color=f"C{i}",
                marker="o",
                markersize=2,
                label=f"{name} ({c['runs']} runs)",
            )
            ax.fill_between(c["frames"], c["ci"][0], c["ci"][1], color=f"C{i}", alpha=0.2)
        ax.set_xlabel("environment frames")
        ax.set_ylabel("evaluation episode reward (IQM over seeds)")
        ax.set_title(f"{result['algorithm']} +/- {'+'.join(result['plugins'])} on {args.task} ({result['model']} model)",
                     fontsize=9)  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend(title="band: 95% bootstrap CI", fontsize=8, title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_metrics(outputs: dict[str, Any], path: Path, plt) -> None:
    """The prioritiser's metrics over training (one seed) and its final trajectory priorities."""
    per = outputs["frames_per_iteration"]
    series = {k: v for k, v in outputs["metrics"].items() if not k.endswith("/stored") and k.count("/") == 2}
    panels = len(series) + 1
    cols = min(3, panels)
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax, (name, values) in zip(flat, sorted(series.items()), strict=False):
        ax.plot([u * per for u, _ in values], [v for _, v in values])
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("environment frames", fontsize=8)
        ax.set_ylabel(name.rsplit("/", 1)[-1], fontsize=8)
    ax = flat[len(series)]
    ax.hist(outputs["priorities"], bins=30)
    ax.set_title("final trajectory priorities (seed 0)", fontsize=9)
    ax.set_xlabel("priority", fontsize=8)
    ax.set_ylabel("stored trajectories", fontsize=8)
    for ax in flat[panels:]:
        ax.axis("off")
    fig.suptitle("hetplug plugin metrics over training (seed 0)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_hetdps(outputs: dict[str, Any], path: Path, plt) -> None:
    """The last distance matrix, and which network each agent used at every regrouping."""
    iterations = [u for u, _ in outputs["regroupings"]]
    fig, (ax_d, ax_g) = plt.subplots(1, 2, figsize=(9, 3.8))
    im = ax_d.imshow(outputs["distances"][-1], cmap="viridis")
    fig.colorbar(im, ax=ax_d, label="heterogeneity distance")
    ax_d.set_title(f"distance matrix at iteration {iterations[-1]} (seed 0)", fontsize=9)
    n = len(outputs["distances"][-1])
    ax_d.set_xticks(range(n))
    ax_d.set_yticks(range(n))
    ax_d.set_xlabel("agent")
    ax_d.set_ylabel("agent")
    grid = torch.tensor([a for _, a in outputs["regroupings"]]).T  # [N, regroupings]
    ax_g.imshow(grid, aspect="auto", cmap="tab10", interpolation="nearest", vmin=0, vmax=9)
    ax_g.set_yticks(range(n))
    ax_g.set_xticks(range(len(iterations)), [str(i) for i in iterations], fontsize=7)
    ax_g.set_xlabel("training iteration of the regrouping")
    ax_g.set_ylabel("agent")
    ax_g.set_title("network (slot) of each agent; colour = slot", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_latents(mu: list, path: Path, plt) -> None:
    """SHPPO latent means over one episode, one colour per agent (like the paper's Fig. 5)."""
    mu = torch.tensor(mu)  # [T, N, L]
    fig, ax = plt.subplots(figsize=(5, 4))
    for i in range(mu.shape[1]):
        y = mu[:, i, 1] if mu.shape[2] > 1 else torch.zeros(mu.shape[0])
        ax.scatter(mu[:, i, 0], y, s=8, label=f"agent {i}")
    ax.set_xlabel("latent mean, dimension 0")
    ax.set_ylabel("latent mean, dimension 1")
    ax.set_title("SHPPO latents over one evaluation episode (seed 0)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
