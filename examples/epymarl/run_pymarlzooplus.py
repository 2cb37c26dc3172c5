"""A hetplug plugin on lbforaging, hosted by PyMARLzoo+ (pip, no checkout).

    python examples/epymarl/run_pymarlzooplus.py --plugin shep --t-max 20000
    python examples/epymarl/run_pymarlzooplus.py --plugin hetdps --players 3 --t-max 3000
    python examples/epymarl/run_pymarlzooplus.py --plugin shppo --config mappo --players 3 --t-max 3000

PyMARLzoo+ keeps its yaml configs inside the package, so the ``hetplug`` key travels
through its Python entry point (``algo_args``). With an EPyMARL checkout, use the yaml
files beside this script and ``hetplug-epymarl`` instead (see README.md here).
"""

from __future__ import annotations

import argparse

import hetplug_epymarl
from hetplug.metrics import scalar_metrics

# lbforaging, 8x8 grid, 2 players, 3 foods: obs = 3 x (y, x, level) per food, then per
# player (the observing agent first), so the agent's own (y, x) is obs[9:11].
POSITIONS = {"key": "obs", "slice": [9, 11]}
SHEP = {
    "grid_low": [0, 0],
    "grid_high": [7, 7],
    "grid_shape": [8, 8],
    "intrinsic_reward": True,
}


# HetDPS regroups every 10 updates; the CVAE refits on the collected meta-transitions.
HETDPS = {"interval": 10, "cvae": {"epochs": 20}}


def settings(plugin: str):
    if plugin == "shep":
        return {"plugins": [plugin], "shep": SHEP, "positions": POSITIONS}
    if plugin == "hetdps":
        return {"plugins": [plugin], "hetdps": HETDPS}
    return [plugin]


def env_key(players: int) -> str:
    """8x8 lbforaging; with 2 players 3 foods (the SHEP slice above), with 3 players 2 foods."""
    return "lbforaging:Foraging-8x8-2p-3f-v3" if players == 2 else "lbforaging:Foraging-8x8-3p-2f-v3"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--plugin", choices=["per", "shep", "hetdps", "shppo", "lbs", "none"], default="shep")
    parser.add_argument(
        "--config",
        default="qmix",
        help="iql, vdn, qmix (per, shep, hetdps); mappo, ippo (all but lbs); iql_ns (lbs)",
    )
    parser.add_argument("--players", type=int, choices=[2, 3], default=2, help="SHEP's slice is for 2")
    parser.add_argument("--t-max", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    if args.plugin == "shep" and args.players != 2:
        parser.error("--plugin shep: the position slice here is for --players 2")
    from pymarlzooplus import pymarlzooplus

    hetplug_epymarl.install("pymarlzooplus")
    on_policy = args.config in ("mappo", "ippo")
    algo_args = {
        "t_max": args.t_max,
        # on-policy: the buffer is the rollout (4 episodes), filled by one environment
        **(
            {"runner": "episode", "batch_size_run": 1, "batch_size": 4, "buffer_size": 4}
            if on_policy
            else {"batch_size": 8, "buffer_size": 500}
        ),
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
            "env_args": {"key": env_key(args.players), "time_limit": 50, "seed": args.seed},
            "algo_args": algo_args,
        }
    )
    session = hetplug_epymarl.last_session()
    if session is not None:
        print("hetplug:", {k: round(v, 4) for k, v in scalar_metrics(session.metrics).items()})
        for update, assignment in session.plans:  # HetDPS: agent -> network slot
            print(f"hetdps plan after update {update}: agents -> slots {list(assignment)}")


if __name__ == "__main__":  # PyMARLzoo+'s parallel runner spawns processes: keep the guard
    main()
