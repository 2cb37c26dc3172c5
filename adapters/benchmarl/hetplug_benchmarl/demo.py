"""``hetplug demo``: a short real BenchMARL training on VMAS, with and without hetplug.

    hetplug demo                                    # IQL on vmas/navigation, with and without SHEP
    hetplug demo --plugins per --algorithm qmix --frames 20000
    hetplug demo --task balance --device cuda

Both runs use the same seed and settings; only the plugins differ. The report goes to
``--out`` (default runs/demo): ``curves.png`` (mean environment reward per step against
frames, both runs side by side), ``hetplug.png`` (the plugin's metrics over training and
the final trajectory priorities) and ``report.json`` with every number plotted.
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
#: on-policy algorithms (the buffer holds the current rollout)
ON_POLICY = {"mappo": MappoConfig, "ippo": IppoConfig}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="hetplug demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--task", default="navigation", help="VMAS task (BenchMARL's VmasTask name), e.g. balance")
    p.add_argument("--algorithm", default="iql", choices=sorted(ALGORITHMS) + sorted(ON_POLICY))
    p.add_argument("--plugins", nargs="+", default=["shep"], help="hetplug plugins for the second run")
    p.add_argument("--frames", type=int, default=60_000, help="environment frames per run")
    p.add_argument("--envs", type=int, default=20, help="vectorised VMAS environments")
    p.add_argument("--frames-per-batch", type=int, default=1_000, help="frames collected per iteration")
    p.add_argument("--updates", type=int, default=40, help="optimiser steps per iteration")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--out", default="runs/demo")
    args = p.parse_args(argv)
    # the model both runs use (the plugins that need their own model get it for the baseline too)
    args.model = "slot" if "hetdps" in args.plugins else "shppo" if "shppo" in args.plugins else "mlp"
    if args.model == "shppo" and args.algorithm not in ON_POLICY:
        p.error(f"--plugins shppo needs an on-policy algorithm ({', '.join(sorted(ON_POLICY))})")
    if "hetdps" in args.plugins and "shppo" in args.plugins:
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
        from hetplug_benchmarl.models import SlotMlpConfig

        model = SlotMlpConfig(num_cells=list(model.num_cells), activation_class=model.activation_class)
    elif getattr(args, "model", "mlp") == "shppo":  # SHPPO's actor, Table IV sizes
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
                "iterations": [it for it, _ in hetplug_cb.plans.get(g, [])],
                "assignments": [list(a) for _, a in hetplug_cb.plans.get(g, [])],
                "distances": [d.tolist() for d in hetplug_cb.distances.get(g, [])],
            }
            for g in exp.group_map
        }
    if hetplug_cb is not None and "shppo" in plugins:
        result["shppo_latent_means"] = _episode_latents(exp)
    return result


def _episode_latents(exp) -> dict[str, list]:
    """``{group: [T, N, L]}`` latent means of one evaluation episode (first environment)."""
    from hetplug_benchmarl.models import shppo_model

    with torch.no_grad():
        rollout = exp.test_env.rollout(max_steps=exp.max_steps, policy=exp.policy, auto_cast_to_device=True)
        out = {}
        for group in exp.group_map:
            obs = rollout.get((group, "observation"))
            obs = obs[0] if obs.dim() == 4 else obs  # vectorised envs: the first one
            mu, _ = shppo_model(exp, group).latent_net(obs.to(next(exp.policy.parameters()).device))
            out[group] = mu.cpu().tolist()
    return out


def _tail_mean(values: list[float], frac: float = 0.25) -> float:
    k = max(1, math.ceil(len(values) * frac))
    return sum(values[-k:]) / k


def write_report(args: argparse.Namespace, runs: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for run in runs:
        ax.plot(run["frames"], run["mean_step_reward"], label=run["label"])
    ax.set_xlabel("environment frames")
    ax.set_ylabel("mean reward per agent-step")
    ax.set_title(f"{args.algorithm} on vmas/{args.task} (seed {args.seed})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    plt.close(fig)

    plugin_run = runs[-1]
    series = {k: v for k, v in plugin_run["metrics"].items() if not k.endswith("/stored")}
    panels = len(series) + (1 if "final_priorities" in plugin_run else 0)
    if panels:
        cols = min(3, panels)
        rows = -(-panels // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
        flat = list(axes.flat)
        for ax, (name, values) in zip(flat, sorted(series.items()), strict=False):
            ax.plot(plugin_run["frames"][: len(values)], values)
            ax.set_title(name.split("/", 2)[-1], fontsize=9)
            ax.set_xlabel("frames", fontsize=8)
        if "final_priorities" in plugin_run:
            ax = flat[len(series)]
            for group, p in plugin_run["final_priorities"].items():
                ax.hist(p, bins=30, alpha=0.7, label=group)
            ax.set_title("final trajectory priorities", fontsize=9)
        for ax in flat[panels:]:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(out / "hetplug.png", dpi=120)
        plt.close(fig)

    if "hetdps" in plugin_run:
        _plot_hetdps(plugin_run["hetdps"], out / "hetdps.png", plt)
    if "shppo_latent_means" in plugin_run:
        _plot_latents(plugin_run["shppo_latent_means"], out / "shppo_latents.png", plt)

    report = {
        "task": f"vmas/{args.task}",
        "algorithm": args.algorithm,
        "plugins": args.plugins,
        "frames": args.frames,
        "seed": args.seed,
        "device": args.device,
        "summary": {
            run["label"]: {
                "final_quarter_mean_step_reward": _tail_mean(run["mean_step_reward"]),
                "seconds": run["seconds"],
            }
            for run in runs
        },
        "runs": runs,
    }
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report


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

    hetplug.get_plugin_manager(args.plugins)  # unknown names fail before any training
    torch.set_num_threads(1) if args.device == "cpu" else None
    out = Path(args.out)
    runs = [run_once(args, [], out / "baseline"), run_once(args, args.plugins, out / "hetplug")]
    report = write_report(args, runs, out)
    pngs = ", ".join(sorted(p.name for p in out.glob("*.png")))
    print(f"\nreport written to {out}/ ({pngs}, report.json)")
    for label, s in report["summary"].items():
        print(
            f"  {label:>10}: mean step reward over the last quarter {s['final_quarter_mean_step_reward']:+.4f}"
            f" ({s['seconds']:.0f} s)"
        )
    return 0
