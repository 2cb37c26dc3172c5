"""SHEP in its own setting: a MAgent2 battle in BenchMARL, with and without SHEP.

The paper's setting (shep.txt, section 5.1) is a large battle with sparse win/loss
outcomes, where cohesion and the relative advantage delta(t) = kappa (E_self - E_opp)
over the opponent are meant to track success. Here: BenchMARL's task ``magent/battle``
(hetplug_benchmarl.tasks), 30 v 30 on a 30 x 30 map. Red is one BenchMARL agent group and
learns; blue is a fixed scripted policy (``greedy``: attack the weakest red in range, else
move towards the nearest red), standing in for the paper's opponents, which were trained
beforehand and then fixed. The same run twice, same seed and settings:

- ``iql``: BenchMARL's IQL (independent Q-learners, shared parameters);
- ``iql+shep``: the same with hetplug's ``shep`` plugin running Algorithm 1 (trajectory
  priorities, eq. 5; intrinsic reward; Group-HER), positions from the grid world
  (``positions: {key: position}``), the opponents' from blue's
  (``opponents: {group: blue, key: position}``), dead agents masked by ``alive``. SHEP's
  grid covers the map; ``her_reward`` is the task's ``win_reward`` (docs/benchmarl.md,
  "MAgent2 battle"); every other SHEP option is at its default (nothing tuned).

IQL rather than MAPPO by default: SHEP prioritises stored trajectories (eqs. 5-7), and
only BenchMARL's off-policy algorithms keep past episodes (with MAPPO the adapter can only
reweight minibatches inside the current rollout); IQL's per-agent Q-learning also fits
battle's per-agent rewards. ``--algorithm mappo`` runs MAPPO instead.

The default is a short run (about two minutes per variant on 2 CPU cores): far too short
to beat the scripted team, so expect win rates of 0 and read the returns, survivors and
SHEP's descriptors. A longer run: ``--frames 300000``.

    python examples/shep_battle.py                         # both variants, defaults
    python examples/shep_battle.py --frames 300000 --opponent random

Prints a table and writes runs/shep_battle/results.json (and curves.png with matplotlib).
Needs ``pip install -c constraints.txt -e ".[magent]"``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

from benchmarl.algorithms import IqlConfig, MappoConfig  # noqa: E402
from benchmarl.experiment import Callback, Experiment, ExperimentConfig  # noqa: E402
from benchmarl.models.mlp import MlpConfig  # noqa: E402

import hetplug_benchmarl  # noqa: E402
from hetplug_benchmarl.tasks import BattleClass, MAgentBattleTask, win_rate  # noqa: E402

SHEP_METRICS = ("moran_i", "occupancy_entropy", "advantage_change", "intrinsic_reward", "her_trajectories")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=["base", "shep"], choices=["base", "shep"])
    p.add_argument("--algorithm", choices=["iql", "mappo"], default="iql")
    p.add_argument("--frames", type=int, default=10_000, help="environment steps per variant")
    p.add_argument("--frames-per-batch", type=int, default=1000)
    p.add_argument("--envs", type=int, default=10, help="vectorised environments")
    p.add_argument("--updates", type=int, default=50, help="IQL optimiser steps per collected batch")
    p.add_argument("--batch", type=int, default=128, help="IQL: transitions per optimiser step")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--hidden", type=int, nargs="+", default=[128, 128])
    p.add_argument("--map-size", type=int, default=30, help="30: 30 v 30")
    p.add_argument("--max-cycles", type=int, default=100)
    p.add_argument("--opponent", choices=["greedy", "random"], default="greedy")
    p.add_argument(
        "--shep-options",
        type=json.loads,
        default={},
        help="JSON overriding SHEP options, e.g. '{\"group_her\": false}' for an ablation",
    )
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/shep_battle")
    return p.parse_args(argv)


def shep_config(task: BattleClass, **options) -> dict:
    """hetplug's configuration for SHEP on the battle: Algorithm 1, positions from the grid
    world, the grid over the map, r_her = the task's win reward; ``options`` override."""
    size = task.config["map_size"]
    return {
        "plugins": ["shep"],
        "shep": {
            "grid_low": [0, 0],
            "grid_high": [size, size],
            "intrinsic_reward": True,
            "group_her": True,
            "her_reward": float(task.config["win_reward"]),  # an absolute r_her: the task's win reward
            "her_reward_relative": False,
            **options,
        },
        "positions": {"key": "position", "slice": [0, 2]},
        "opponents": {"group": "blue", "key": "position", "slice": [0, 2]},
    }


class BattleRecorder(Callback):
    """Per iteration: the environment's returns (before hetplug's intrinsic reward), win
    rate and survivors of the episodes that ended, and the collection time; per evaluation:
    win rate and return of the greedy policy."""

    def __init__(self) -> None:
        super().__init__()
        self.curve: list[dict] = []
        self.evaluations: list[dict] = []
        self.collection_s = 0.0
        self.frames = 0

    def on_setup(self) -> None:
        self._mark = time.perf_counter()

    def on_batch_collected(self, batch) -> None:
        self.collection_s += time.perf_counter() - self._mark
        self.frames += batch.numel()
        done = batch.get(("next", "done")).squeeze(-1)
        row = {"frames": self.frames, "episodes": int(done.sum())}
        if done.any():
            returns = batch.get(("next", "red", "episode_reward")).squeeze(-1).mean(-1)[done]
            row["return"] = returns.mean().item()
            row.update({k.split("/")[1]: v for k, v in BattleClass.log_info(batch).items()})
        self.curve.append(row)

    def on_train_end(self, training_td, group: str) -> None:
        self._mark = time.perf_counter()

    def on_evaluation_end(self, rollouts) -> None:
        returns = []
        for r in rollouts:
            done = r.get(("next", "done")).squeeze(-1)
            end = int(done.nonzero()[0, 0]) + 1 if done.any() else done.shape[0]
            returns.append(r.get(("next", "red", "reward"))[:end].sum(0).mean().item())
        self.evaluations.append(
            {"frames": self.frames, "return": sum(returns) / len(returns), "win_rate": win_rate(rollouts)}
        )
        self._mark = time.perf_counter()


def build(args, variant: str, folder: Path) -> tuple[Experiment, BattleRecorder, object]:
    task = MAgentBattleTask.BATTLE.get_from_yaml()
    task.config.update(map_size=args.map_size, max_cycles=args.max_cycles, opponent=args.opponent)
    cfg = ExperimentConfig.get_from_yaml()
    cfg.render = False  # torchvision does not import here (FACTS.md)
    cfg.loggers = []
    cfg.create_json = True  # BenchMARL evaluates only with a logger or its json
    cfg.save_folder = str(folder)
    cfg.checkpoint_interval = 0
    cfg.checkpoint_at_end = False
    cfg.lr = args.lr
    cfg.max_n_frames = args.frames
    cfg.evaluation_episodes = args.eval_episodes
    cfg.evaluation_interval = args.frames  # at the start and at the end
    cfg.exploration_anneal_frames = args.frames // 2
    cfg.off_policy_collected_frames_per_batch = args.frames_per_batch
    cfg.off_policy_n_envs_per_worker = args.envs
    cfg.off_policy_n_optimizer_steps = args.updates
    cfg.off_policy_train_batch_size = args.batch
    # a stored frame holds 2 x agents x 845 floats (200 KB at 30 v 30): keep the whole run, at most 50 batches
    cfg.off_policy_memory_size = min(max(args.frames, args.frames_per_batch), 50 * args.frames_per_batch)
    cfg.on_policy_collected_frames_per_batch = args.frames_per_batch
    cfg.on_policy_n_envs_per_worker = args.envs
    cfg.on_policy_n_minibatch_iters = 4
    cfg.on_policy_minibatch_size = min(400, args.frames_per_batch)
    model = MlpConfig.get_from_yaml()
    model.num_cells = list(args.hidden)
    model.num_feature_dims = 3  # [13, 13, 5] views
    algorithm = (IqlConfig if args.algorithm == "iql" else MappoConfig).get_from_yaml()
    recorder = BattleRecorder()
    experiment = Experiment(
        task=task,
        algorithm_config=algorithm,
        model_config=model,
        critic_model_config=model,
        seed=args.seed,
        config=cfg,
        callbacks=[recorder],
    )
    callback = None
    if variant == "shep":
        callback = hetplug_benchmarl.wrap(experiment, shep_config(task, **args.shep_options))
    return experiment, recorder, callback


def mean_last(rows: list[dict], key: str, n: int = 3) -> float:
    values = [r[key] for r in rows if key in r][-n:]
    return sum(values) / len(values) if values else math.nan


def run_variant(args, variant: str, out: Path) -> dict:
    folder = out / variant
    folder.mkdir(parents=True, exist_ok=True)
    experiment, recorder, callback = build(args, variant, folder)
    start = recorder._mark = time.perf_counter()
    experiment.run()
    wall = time.perf_counter() - start
    name = args.algorithm + ("+shep" if variant == "shep" else "")
    result = {
        "variant": name,
        "wall_s": wall,
        "frames": recorder.frames,
        "env_steps_per_s": recorder.frames / max(recorder.collection_s, 1e-9),
        "agents": len(experiment.group_map["red"]),
        "return_last3": mean_last(recorder.curve, "return"),
        "win_rate_last3": mean_last(recorder.curve, "win_rate"),
        "red_alive_last3": mean_last(recorder.curve, "red_alive"),
        "blue_alive_last3": mean_last(recorder.curve, "blue_alive"),
        "eval": recorder.evaluations,
        "curve": recorder.curve,
    }
    if callback is not None:
        shep = {
            k.rsplit("/", 1)[-1]: v
            for k, v in callback.metrics("red").items()
            if k.startswith("hetplug/shep/")
        }
        result["shep"] = {k: float(shep[k]) for k in SHEP_METRICS if k in shep}
    return result


def print_table(results: list[dict]) -> None:
    print(
        f"\n{'variant':<11}{'wall s':>8}{'frames':>8}{'steps/s':>9}{'return':>9}{'win':>6}"
        f"{'red alive':>11}{'blue alive':>12}{'eval return':>13}{'eval win':>10}"
    )
    for r in results:
        last = r["eval"][-1] if r["eval"] else {"return": math.nan, "win_rate": math.nan}
        print(
            f"{r['variant']:<11}{r['wall_s']:>8.1f}{r['frames']:>8}{r['env_steps_per_s']:>9.0f}"
            f"{r['return_last3']:>9.3f}{r['win_rate_last3']:>6.2f}{r['red_alive_last3']:>11.1f}"
            f"{r['blue_alive_last3']:>12.1f}{last['return']:>13.3f}{last['win_rate']:>10.2f}"
        )
    for r in results:
        if "shep" in r:
            print(f"{r['variant']} (last batch): " + ", ".join(f"{k} {v:.4f}" for k, v in r["shep"].items()))
    print("(return/win/alive: mean over the last 3 collected batches' ended episodes; eval: greedy policy)")


def plot(results: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for r in results:
        rows = [row for row in r["curve"] if "return" in row]
        axes[0].plot([row["frames"] for row in rows], [row["return"] for row in rows], label=r["variant"])
        axes[1].plot([row["frames"] for row in rows], [row["blue_alive"] for row in rows], label=r["variant"])
    axes[0].set(xlabel="environment steps", ylabel="episode return (per agent)", title="red's return")
    axes[1].set(xlabel="environment steps", ylabel="blue agents alive at the end", title="blue's losses")
    for ax in axes:
        ax.legend()
    fig.suptitle("magent/battle 30 v 30, one seed per variant")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = [run_variant(args, v, out) for v in args.variants]
    summary = {"args": vars(args), "results": results, "wall_s": time.perf_counter() - start}
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    print_table(results)
    if plot(results, out / "curves.png"):
        print(f"wrote {out / 'results.json'} and {out / 'curves.png'}")
    else:
        print(f"wrote {out / 'results.json'}")
    print(f"total wall time {summary['wall_s']:.1f} s")
    return summary


if __name__ == "__main__":
    main()
