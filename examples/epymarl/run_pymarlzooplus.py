"""QMIX with a hetplug plugin on lbforaging, hosted by PyMARLzoo+ (pip, no checkout).

    python examples/epymarl/run_pymarlzooplus.py --plugin shep --t-max 20000

PyMARLzoo+ keeps its yaml configs inside the package, so the ``hetplug`` key travels
through its Python entry point (``algo_args``). With an EPyMARL checkout, use the yaml
files beside this script and ``hetplug-epymarl`` instead (see README.md here).
"""

from __future__ import annotations

import argparse

import hetplug_epymarl

# lbforaging, 8x8 grid, 2 players, 3 foods: obs = 3 x (y, x, level) per food, then per
# player (the observing agent first), so the agent's own (y, x) is obs[9:11].
SHEP = {
    "positions": {"source": "obs", "slice": [9, 11]},
    "grid_low": [0, 0],
    "grid_high": [7, 7],
    "grid_shape": [8, 8],
    "intrinsic_reward": True,
}


def settings(plugin: str):
    return {"plugins": [plugin], "shep": SHEP} if plugin == "shep" else [plugin]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--plugin", choices=["per", "shep", "none"], default="shep")
    parser.add_argument("--config", default="qmix", help="iql, vdn or qmix")
    parser.add_argument("--t-max", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    from pymarlzooplus import pymarlzooplus

    hetplug_epymarl.install("pymarlzooplus")
    algo_args = {
        "t_max": args.t_max,
        "batch_size": 8,
        "buffer_size": 500,
        "test_interval": max(args.t_max // 4, 50),
        "test_nepisode": 4,
        "log_interval": max(args.t_max // 4, 50),
        "learner_log_interval": max(args.t_max // 4, 50),
        "runner_log_interval": max(args.t_max // 4, 50),
    }
    if args.plugin != "none":
        algo_args["hetplug"] = settings(args.plugin)
    pymarlzooplus(
        {
            "config": args.config,
            "env-config": "gymma",
            "env_args": {"key": "lbforaging:Foraging-8x8-2p-3f-v3", "time_limit": 50, "seed": args.seed},
            "algo_args": algo_args,
        }
    )
    session = hetplug_epymarl.last_session()
    if session is not None:
        print("hetplug:", {k: round(v, 4) for k, v in session.scalar_metrics().items()})


if __name__ == "__main__":  # PyMARLzoo+'s parallel runner spawns processes: keep the guard
    main()
