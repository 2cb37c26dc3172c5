"""Zero-shot team size in BenchMARL: train at one team size, evaluate at others without training.

SHPPO (HAPPO (share) + hetplug's SHPPO model + the ``shppo`` plugin, the paper's method)
or the shared-MLP baseline (the same algorithm with BenchMARL's MLP, one network for all
agents) is trained on VMAS navigation with ``--train-agents`` agents; its policy is then
copied into experiments with each of ``--eval-agents`` agents
(:func:`hetplug_benchmarl.evaluate_team_sizes`) and evaluated there, deterministically.
Navigation's observations do not depend on the team size, and neither do the parameters of
either policy, so both transfer.

    python examples/zero_shot_team_size.py --model shppo --seed 0            # prints {n: reward}
    python examples/zero_shot_team_size.py --model mlp --seed 0 --frames 3000000
    python examples/zero_shot_team_size.py --model shppo --out runs/zero_shot/shppo_0.json

``main`` returns ``{"model", "seed", "train_agents", "frames", "eval": {n: mean episode
reward}}`` (the per-team-size numbers a results page aggregates over seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["shppo", "mlp"], default="shppo")
    p.add_argument("--algorithm", choices=["happo", "mappo", "ippo"], default="happo")
    p.add_argument("--train-agents", type=int, default=3)
    p.add_argument("--eval-agents", type=int, nargs="+", default=[2, 3, 4])
    p.add_argument("--frames", type=int, default=1_200_000, help="training frames")
    p.add_argument("--frames-per-batch", type=int, default=6000)
    p.add_argument("--envs", type=int, default=60)
    p.add_argument("--minibatch", type=int, default=400)
    p.add_argument("--epochs", type=int, default=5, help="on_policy_n_minibatch_iters (HARL: 5)")
    p.add_argument("--evaluation-episodes", type=int, default=50)
    p.add_argument("--max-steps", type=int, default=None, help="episode length (navigation's default: 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="write the result as json here")
    return p.parse_args(argv)


def build(args: argparse.Namespace, folder: str):
    from benchmarl.algorithms import IppoConfig, MappoConfig
    from benchmarl.environments import VmasTask
    from benchmarl.experiment import Experiment, ExperimentConfig
    from benchmarl.models.mlp import MlpConfig

    import hetplug_benchmarl

    cfg = ExperimentConfig.get_from_yaml()
    cfg.render, cfg.loggers, cfg.create_json, cfg.evaluation = False, [], False, False
    cfg.checkpoint_interval, cfg.checkpoint_at_end = 0, False
    cfg.save_folder = folder
    cfg.sampling_device = cfg.train_device = args.device
    cfg.max_n_frames = args.frames
    cfg.on_policy_collected_frames_per_batch = args.frames_per_batch
    cfg.on_policy_n_envs_per_worker = args.envs
    cfg.on_policy_minibatch_size = args.minibatch
    cfg.on_policy_n_minibatch_iters = args.epochs
    cfg.evaluation_episodes = args.evaluation_episodes
    cfg.lr, cfg.gamma = 5e-4, 0.95  # Table V
    algorithm = {"happo": hetplug_benchmarl.HappoConfig, "mappo": MappoConfig, "ippo": IppoConfig}[
        args.algorithm
    ]
    task = VmasTask.NAVIGATION.get_from_yaml()
    task.config["n_agents"] = args.train_agents
    if args.max_steps is not None:
        task.config["max_steps"] = args.max_steps
    model = hetplug_benchmarl.SHPPOModelConfig() if args.model == "shppo" else MlpConfig.get_from_yaml()
    exp = Experiment(
        task=task,
        algorithm_config=algorithm.get_from_yaml(),
        model_config=model,
        critic_model_config=MlpConfig.get_from_yaml(),
        seed=args.seed,
        config=cfg,
    )
    if args.model == "shppo":
        hetplug_benchmarl.wrap(exp, ["shppo"])
    return exp


def main(argv=None) -> dict:
    args = parse_args(argv)
    import hetplug_benchmarl

    with tempfile.TemporaryDirectory(prefix="hetplug_zero_shot_") as folder:
        exp = build(args, folder)
        exp.run()
        rewards = hetplug_benchmarl.evaluate_team_sizes(exp, args.eval_agents)
    result = {
        "model": args.model,
        "algorithm": args.algorithm,
        "seed": args.seed,
        "train_agents": args.train_agents,
        "frames": args.frames,
        "eval": {int(n): float(r) for n, r in rewards.items()},
    }
    print(json.dumps(result), file=sys.stdout)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
