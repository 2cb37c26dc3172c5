"""``hetplug demo``: short real BenchMARL trainings on VMAS, with and without hetplug.

    hetplug demo                                    # the suite: three comparisons (below)
    hetplug demo --algorithm iql --plugins shep     # one comparison
    hetplug demo --plugins per --algorithm qmix --frames 20000
    hetplug demo --task balance --device cuda

The suite (no ``--algorithm``/``--plugins``) runs three comparisons, each twice with the
same seed and settings, only the plugins differing: IQL with and without SHEP, IQL with
and without HetDPS (both runs on HetDPS's slot model), and MAPPO with and without SHPPO's
latent training (both runs on SHPPO's actor). The report goes to ``--out`` (default
runs/demo): ``curves.png`` (mean environment reward per step against frames, one panel
per comparison), ``hetplug.png`` (SHEP's metrics over training and the final trajectory
priorities), ``hetdps.png`` (the distance matrix and each agent's network over time),
``shppo_latents.png`` (latent means of one episode) and ``report.json`` with every number
plotted.
"""

from __future__ import annotations

import argparse
import json
import math
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
from benchmarl.experiment import Callback

from hetplug_benchmarl.algorithms import HappoConfig

#: The off-policy algorithms the adapter's prioritisers serve, by command-line name.
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


def model_for(plugins: list[str]) -> str:
    """The model both runs of a comparison use (a plugin that needs its own model gets it
    for the baseline too, so only the plugin differs)."""
    return "slot" if "hetdps" in plugins else "shppo" if "shppo" in plugins else "mlp"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="hetplug demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--task", default="navigation", help="VMAS task (BenchMARL's VmasTask name), e.g. balance")
    p.add_argument("--algorithm", choices=sorted(ALGORITHMS) + sorted(ON_POLICY),
                   help="one comparison with this algorithm (default: the suite)")  # fmt: skip
    p.add_argument("--plugins", nargs="+", help="hetplug plugins for the second run (default: the suite)")
    p.add_argument(
        "--frames", type=int, help="environment frames per run (default 60000; 30000 in the suite)"
    )
    p.add_argument("--envs", type=int, default=20, help="vectorised VMAS environments")
    p.add_argument("--frames-per-batch", type=int, default=1_000, help="frames collected per iteration")
    p.add_argument("--updates", type=int, default=40, help="optimiser steps per iteration")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--out", default="runs/demo")
    args = p.parse_args(argv)
    args.suite = args.algorithm is None and args.plugins is None
    args.algorithm = args.algorithm or "iql"
    args.plugins = args.plugins or ["shep"]
    args.frames = args.frames or (30_000 if args.suite else 60_000)
    args.comparisons = SUITE if args.suite else [(args.algorithm, list(args.plugins))]
    for algorithm, plugins in args.comparisons:
        if "shppo" in plugins and algorithm not in ON_POLICY:
            p.error(f"--plugins shppo needs an on-policy algorithm ({', '.join(sorted(ON_POLICY))})")
        if "hetdps" in plugins and "shppo" in plugins:
            p.error("--plugins: hetdps and shppo each need their own model; choose one")
    if args.frames_per_batch % args.envs:
        p.error(f"--frames-per-batch ({args.frames_per_batch}) must be a multiple of --envs ({args.envs})")
    if args.frames < args.frames_per_batch:
        p.error(f"--frames ({args.frames}) must be at least --frames-per-batch ({args.frames_per_batch})")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


def _experiment(args: argparse.Namespace, out: Path, callbacks: list) -> Any:
    from benchmarl.environments import VmasTask
    from benchmarl.experiment import Experiment, ExperimentConfig
    from benchmarl.models.mlp import MlpConfig

    try:
        task = VmasTask[args.task.upper()].get_from_yaml()
    except KeyError:
        names = ", ".join(t.name.lower() for t in VmasTask)
        raise SystemExit(f"--task {args.task!r} is not a VMAS task; choose one of: {names}") from None
    cfg = ExperimentConfig.get_from_yaml()
    cfg.render = False  # torchvision's CUDA build does not import on CPU machines (FACTS.md)
    cfg.loggers = []
    cfg.create_json = False
    cfg.evaluation = False
    cfg.checkpoint_interval = 0
    cfg.checkpoint_at_end = False
    cfg.save_folder = str(out)
    cfg.sampling_device = cfg.train_device = cfg.buffer_device = args.device
    cfg.max_n_frames = args.frames
    cfg.off_policy_collected_frames_per_batch = args.frames_per_batch
    cfg.off_policy_n_envs_per_worker = args.envs
    cfg.off_policy_n_optimizer_steps = args.updates
    cfg.off_policy_train_batch_size = 256
    cfg.off_policy_memory_size = 100_000
    # on-policy: one rollout of the same size, `updates` minibatches of 200 per iteration
    cfg.on_policy_collected_frames_per_batch = args.frames_per_batch
    cfg.on_policy_n_envs_per_worker = args.envs
    cfg.on_policy_minibatch_size = min(200, args.frames_per_batch)
    cfg.on_policy_n_minibatch_iters = max(
        1, args.updates * cfg.on_policy_minibatch_size // args.frames_per_batch
    )
    algorithm = {**ALGORITHMS, **ON_POLICY}[args.algorithm]
    model = MlpConfig.get_from_yaml()
    if getattr(args, "model", "mlp") == "slot":  # HetDPS's per-agent slot model, same widths
        from hetplug_benchmarl.models import SlotModelConfig

        model = SlotModelConfig(num_cells=list(model.num_cells), activation_class=model.activation_class)
    elif getattr(args, "model", "mlp") == "shppo":  # SHPPO as the paper runs it: recurrent, sampled latents
        from hetplug_benchmarl.models import SHPPOModelConfig

        model = SHPPOModelConfig()
    return Experiment(
        task=task,
        algorithm_config=algorithm.get_from_yaml(),
        model_config=model,
        critic_model_config=MlpConfig.get_from_yaml(),
        seed=args.seed,
        config=cfg,
        callbacks=callbacks,
    )


class Recorder(Callback):
    """Mean environment reward per agent-step of every collected batch. Put it first in
    the callbacks: it then sees the reward before any intrinsic bonus is added."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[int] = []
        self.reward: list[float] = []

    def on_batch_collected(self, batch) -> None:
        rewards = [batch.get(("next", g, "reward")).mean() for g in self.experiment.group_map]
        self.reward.append(float(torch.stack(rewards).mean()))  # once per iteration, for the report
        self.frames.append(int(self.experiment.total_frames))


def run_once(args: argparse.Namespace, plugins: list[str], out: Path) -> dict[str, Any]:
    from hetplug_benchmarl import HetplugCallback

    recorder = Recorder()
    callbacks = [recorder]
    hetplug_cb = None
    if plugins:
        iterations = max(1, args.frames // args.frames_per_batch)
        options = {"hetdps": {"interval": max(1, iterations // 6)}} if "hetdps" in plugins else {}
        hetplug_cb = HetplugCallback(plugins, options)  # hetdps: about six regroupings per run
        callbacks.append(hetplug_cb)
    out.mkdir(parents=True, exist_ok=True)
    label = "+".join(plugins) or "baseline"
    print(f"\n== {args.algorithm} on vmas/{args.task}: {label} ==", flush=True)
    exp = _experiment(args, out, callbacks)
    start = time.perf_counter()
    exp.run()
    result: dict[str, Any] = {
        "label": label,
        "frames": recorder.frames,
        "mean_step_reward": recorder.reward,
        "seconds": time.perf_counter() - start,
        "metrics": hetplug_cb.history if hetplug_cb is not None else {},
    }
    if hetplug_cb is not None and any(p in ("per", "shep") for p in plugins):
        result["final_priorities"] = {
            g: hetplug_cb.priorities(g).float().cpu().tolist() for g in exp.group_map
        }
    if hetplug_cb is not None and "hetdps" in plugins:
        result["hetdps"] = {
            g: {
                "iterations": [it for it, _ in hetplug_cb.log.regroupings(g)],
                "assignments": [list(a) for _, a in hetplug_cb.log.regroupings(g)],
                "distances": [d.tolist() for d in hetplug_cb.log.distances(g)],
            }
            for g in exp.group_map
        }
    if hetplug_cb is not None and "shppo" in plugins:
        result["shppo_latent_means"] = _episode_latents(exp)
    return result


def _episode_latents(exp) -> dict[str, list]:
    """``{group: [T, N, L]}`` latent means of one deterministic evaluation episode (first
    environment): the latents the SHPPO model acted with, which are the means (mu) when
    it does not explore."""
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    from hetplug_benchmarl.models import LATENT_KEY

    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        rollout = exp.test_env.rollout(max_steps=exp.max_steps, policy=exp.policy, auto_cast_to_device=True)
    out = {}
    for group in exp.group_map:
        mu = rollout.get((group, LATENT_KEY))
        mu = mu[0] if mu.dim() == 4 else mu  # vectorised envs: the first one
        out[group] = mu.cpu().tolist()
    return out


def _tail_mean(values: list[float], frac: float = 0.25) -> float:
    k = max(1, math.ceil(len(values) * frac))
    return sum(values[-k:]) / k


def write_report(args: argparse.Namespace, comparisons: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    """Plots and ``report.json`` for ``comparisons`` (each: algorithm, plugins, runs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(comparisons), figsize=(6 * len(comparisons), 4), squeeze=False)
    for ax, comp in zip(axes[0], comparisons, strict=True):
        for run in comp["runs"]:
            ax.plot(run["frames"], run["mean_step_reward"], label=run["label"])
        ax.set_xlabel("environment frames")
        ax.set_ylabel("mean reward per agent-step")
        ax.set_title(
            f"{comp['algorithm']} on vmas/{args.task} (seed {args.seed}, {comp['model']} model)", fontsize=9
        )
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    plt.close(fig)

    plugin_runs = [comp["runs"][-1] for comp in comparisons]
    shep = next((r for r in plugin_runs if "final_priorities" in r), None)
    if shep is not None:
        _plot_metrics(shep, out / "hetplug.png", plt)
    hetdps = next((r for r in plugin_runs if "hetdps" in r), None)
    if hetdps is not None:
        _plot_hetdps(hetdps["hetdps"], out / "hetdps.png", plt)
    shppo = next((r for r in plugin_runs if "shppo_latent_means" in r), None)
    if shppo is not None:
        _plot_latents(shppo["shppo_latent_means"], out / "shppo_latents.png", plt)

    report = {
        "task": f"vmas/{args.task}",
        "frames": args.frames,
        "seed": args.seed,
        "device": args.device,
        "comparisons": [
            {
                **comp,
                "summary": {
                    run["label"]: {
                        "final_quarter_mean_step_reward": _tail_mean(run["mean_step_reward"]),
                        "seconds": run["seconds"],
                    }
                    for run in comp["runs"]
                },
            }
            for comp in comparisons
        ],
    }
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report


def _plot_metrics(run: dict[str, Any], path: Path, plt) -> None:
    """The plugin's scalar metrics over training and the final trajectory priorities."""
    series = {k: v for k, v in run["metrics"].items() if not k.endswith("/stored")}
    panels = len(series) + 1
    cols = min(3, panels)
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax, (name, values) in zip(flat, sorted(series.items()), strict=False):
        ax.plot(run["frames"][: len(values)], values)
        ax.set_title(name.split("/", 2)[-1], fontsize=9)
        ax.set_xlabel("frames", fontsize=8)
    ax = flat[len(series)]
    for group, p in run["final_priorities"].items():
        ax.hist(p, bins=30, alpha=0.7, label=group)
    ax.set_title("final trajectory priorities", fontsize=9)
    for ax in flat[panels:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_hetdps(data: dict[str, dict], path: Path, plt) -> None:
    """Per group: the last distance matrix, and which network each agent used over time."""
    groups = [g for g, d in data.items() if d["iterations"]]
    if not groups:
        return
    fig, axes = plt.subplots(len(groups), 2, figsize=(9, 3.5 * len(groups)), squeeze=False)
    for (ax_d, ax_g), group in zip(axes, groups, strict=True):
        d = data[group]
        im = ax_d.imshow(d["distances"][-1], cmap="viridis")
        fig.colorbar(im, ax=ax_d)
        ax_d.set_title(f"{group}: heterogeneity distance (iteration {d['iterations'][-1]})", fontsize=9)
        n = len(d["distances"][-1])
        ax_d.set_xticks(range(n))
        ax_d.set_yticks(range(n))
        ax_d.set_xlabel("agent")
        ax_d.set_ylabel("agent")
        grid = torch.tensor(d["assignments"]).T  # [N, regroupings]
        ax_g.set_yticks(range(n))
        ax_g.imshow(grid, aspect="auto", cmap="tab10", interpolation="nearest", vmin=0, vmax=9)
        ax_g.set_xticks(range(len(d["iterations"])), [str(i) for i in d["iterations"]], fontsize=7)
        ax_g.set_xlabel("iteration of the regrouping")
        ax_g.set_ylabel("agent")
        ax_g.set_title(f"{group}: network (slot) of each agent, colour = slot", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_latents(latents: dict[str, list], path: Path, plt) -> None:
    """SHPPO latent means over one episode, one colour per agent (like the paper's Fig. 5)."""
    fig, axes = plt.subplots(1, len(latents), figsize=(5 * len(latents), 4), squeeze=False)
    for ax, (group, mu) in zip(axes[0], latents.items(), strict=True):
        mu = torch.tensor(mu)  # [T, N, L]
        for i in range(mu.shape[1]):
            y = mu[:, i, 1] if mu.shape[2] > 1 else torch.zeros(mu.shape[0])
            ax.scatter(mu[:, i, 0], y, s=8, label=f"agent {i}")
        ax.set_xlabel("latent mean, dim 0")
        ax.set_ylabel("latent mean, dim 1")
        ax.set_title(f"{group}: SHPPO latents over one episode", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import hetplug

    for _, plugins in args.comparisons:
        hetplug.get_plugin_manager(plugins)  # unknown names fail before any training
    torch.set_num_threads(1) if args.device == "cpu" else None
    out = Path(args.out)
    comparisons = []
    for algorithm, plugins in args.comparisons:
        run_args = argparse.Namespace(**{**vars(args), "algorithm": algorithm, "plugins": plugins,
                                         "model": model_for(plugins)})  # fmt: skip
        name = f"{algorithm}-{'+'.join(plugins)}"
        runs = [
            run_once(run_args, [], out / name / "baseline"),
            run_once(run_args, plugins, out / name / "hetplug"),
        ]
        comparisons.append(
            {"algorithm": algorithm, "plugins": plugins, "model": run_args.model, "runs": runs}
        )
    report = write_report(args, comparisons, out)
    pngs = ", ".join(sorted(p.name for p in out.glob("*.png")))
    print(f"\nreport written to {out}/ ({pngs}, report.json)")
    for comp in report["comparisons"]:
        for label, s in comp["summary"].items():
            print(
                f"  {comp['algorithm']:>6} {label:>10}: mean step reward over the last quarter "
                f"{s['final_quarter_mean_step_reward']:+.4f} ({s['seconds']:.0f} s)"
            )
    return 0
