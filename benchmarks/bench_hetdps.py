"""HetDPS costs: the distance matrix for N agents, and the amortised overhead per update.

1. ``distance``: seconds for one ``[N, N]`` meta-transition distance matrix from 1024
   sampled x (N in {10, 100, 1000}; the CVAE's encoder on all N x 1024 inputs plus the
   all-pairs W2), and for one CVAE refit on ``fit_samples`` pool steps.
2. ``amortised``: a host update (``--ppo-epochs`` forward/backward/Adam passes of a
   slot-routed actor and critic, ``SlotMLP`` 64x64, on a rollout of 64 envs x 25 steps x
   N = 10 agents) against the same update plus hetdps's work: feeding the rollout's
   meta-transitions to the pool every update, and every ``interval`` updates a refit,
   a distance matrix, clustering, matching and the in-place plan. Both are timed in one
   process; the ratio (target <= 1.05) is (update + hetdps work / interval) / update.

    OMP_NUM_THREADS=1 python benchmarks/bench_hetdps.py [--quick] [--device cuda]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import side_by_side, timed  # noqa: E402

import hetplug  # noqa: E402
from hetplug.distance import DistanceEstimator  # noqa: E402
from hetplug.sharing import ParameterSlots, SlotMLP  # noqa: E402


def distance_cost(n: int, device: torch.device, fit_samples: int, repeat: int) -> dict:
    g = torch.Generator().manual_seed(n)
    x = torch.rand(max(1024, fit_samples), n, 12, generator=g).to(device)
    y = torch.rand(max(1024, fit_samples), n, 30, generator=g).to(device)
    est = DistanceEstimator(n, 12, 30, config={"epochs": 1}, fit_samples=fit_samples, device=device)
    est.add(x, y)
    fit = timed(est.fit, device)
    times = [timed(lambda: est.distance_matrix(n_samples=1024), device) for _ in range(repeat)]
    return {"n_agents": n, "distance_s": statistics.median(times), "fit_one_epoch_s": fit}


def rollout(
    n: int, device: torch.device, envs: int = 64, steps: int = 25, seed: int = 0
) -> hetplug.TrajectoryBatch:
    g = torch.Generator().manual_seed(seed)
    return hetplug.TrajectoryBatch(
        reward=torch.rand(envs, steps, n, generator=g).to(device),
        mask=torch.ones(envs, steps, dtype=torch.bool, device=device),
        obs=torch.rand(envs, steps, n, 18, generator=g).to(device),
        actions=torch.randint(0, 5, (envs, steps, n), generator=g).to(device),
    )


def amortised_cost(
    device: torch.device, interval: int, ppo_epochs: int, rounds: int, fit_samples: int
) -> dict:
    n = 10
    batch = rollout(n, device)
    actor = SlotMLP(n, 18, 5, (64, 64)).to(device)
    critic = SlotMLP(n, 18, 1, (64, 64)).to(device)
    opt = torch.optim.Adam([*actor.parameters(), *critic.parameters()], lr=3e-4)
    pm = hetplug.get_plugin_manager(
        ["hetdps"], {"hetdps": {"interval": interval, "fit_samples": fit_samples}}
    )
    spec = hetplug.HostSpec(n_agents=n, max_steps=25, capacity=64, device=device, n_actions=5)
    pm.hook.hetplug_configure.call_historic(kwargs={"spec": spec})
    pm.get_plugin("hetdps").bind(
        ParameterSlots(
            [*actor.parameters(), *critic.parameters()], opt, routing=[actor.routing, critic.routing]
        )
    )

    def host_update() -> None:
        for _ in range(ppo_epochs):
            logits, value = actor(batch.obs), critic(batch.obs).squeeze(-1)
            logp = torch.log_softmax(logits, -1).gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
            loss = -(logp * (batch.reward - value.detach())).mean() + (batch.reward - value).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

    counter = {"update": 0}

    def collect_only() -> None:
        pm.hook.hetplug_trajectories_collected(batch=batch)

    def regroup() -> None:
        counter["update"] += interval
        pm.hook.hetplug_after_update(update=counter["update"])

    collect_only()
    regroup()  # warm-up: first fit and plan
    per = side_by_side({"update": host_update, "collect": collect_only}, device, repeat=rounds * 5)
    regroups = [timed(regroup, device) for _ in range(rounds)]
    work = per["collect"] + statistics.median(regroups) / interval
    return {
        "n_agents": n,
        "interval": interval,
        "ppo_epochs": ppo_epochs,
        "fit_samples": fit_samples,
        "host_update_s": per["update"],
        "collect_hook_s": per["collect"],
        "regroup_s": statistics.median(regroups),
        "ratio": (per["update"] + work) / per["update"],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--interval", type=int, default=100)
    p.add_argument("--ppo-epochs", type=int, default=5)
    p.add_argument("--fit-samples", type=int, default=512)
    args = p.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    sizes = [10, 100] if args.quick else [10, 100, 1000]
    t = time.perf_counter()
    out = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "distance": [distance_cost(n, device, 256 if n >= 1000 else args.fit_samples // 8, 3) for n in sizes],
        "amortised": amortised_cost(
            device, args.interval, args.ppo_epochs, 2 if args.quick else 3, args.fit_samples
        ),
    }
    out["bench_s"] = time.perf_counter() - t
    print(json.dumps(out))


if __name__ == "__main__":
    main()
