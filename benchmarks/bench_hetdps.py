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

   With ``--no-old`` left out, the pre-issue-21 path (encoder on x expanded to every agent,
   direct-difference W2) is timed once on the same draws, with its speedup and the largest
   difference from the new matrix (stated tolerance: 1e-5 (1 + max d) in float32).

    OMP_NUM_THREADS=1 python benchmarks/bench_hetdps.py [--quick] [--no-old] [--device cuda] [--out FILE]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import add_common_args, emit, side_by_side, timed  # noqa: E402

import hetplug  # noqa: E402
from hetplug.distance import DistanceEstimator, pairwise_gaussian_w2  # noqa: E402
from hetplug.distance.wasserstein import mean_pairwise_gaussian_w2  # noqa: E402
from hetplug.sharing import ParameterSlots, SlotMLP  # noqa: E402


def old_distance(est: DistanceEstimator, n_samples: int = 1024) -> torch.Tensor:
    """The pre-issue-21 path, for the before/after columns: the encoder on x expanded to
    every agent, then the direct-difference W2 (cdist per block of samples)."""
    n = est.n_agents
    px, _ = est.pool.sample(n_samples, est.generator)
    who = torch.randint(0, n, (px.shape[0],), generator=est.generator).to(px.device)
    x = px[torch.arange(px.shape[0], device=px.device), who]
    with torch.no_grad():
        mu, sigma = est.model.encode(x.unsqueeze(1).expand(-1, n, -1), agent=torch.arange(n, device=x.device))
        step = max(1, min(mu.shape[0], (1 << 24) // (n * n)))
        total = mu.new_zeros(n, n)
        for start in range(0, mu.shape[0], step):
            total += pairwise_gaussian_w2(mu[start : start + step], sigma[start : start + step]).sum(0)
    return total / mu.shape[0]


def distance_cost(n: int, device: torch.device, fit_samples: int, repeat: int, compare_old: bool) -> dict:
    g = torch.Generator().manual_seed(n)
    x = torch.rand(max(1024, fit_samples), n, 12, generator=g).to(device)
    y = torch.rand(max(1024, fit_samples), n, 30, generator=g).to(device)
    est = DistanceEstimator(n, 12, 30, config={"epochs": 1}, fit_samples=fit_samples, device=device)
    est.add(x, y)
    fit = timed(est.fit, device)
    est.distance_matrix(n_samples=1024)  # warm-up
    times, cpu = [], []
    for _ in range(repeat):
        c = time.process_time()
        times.append(timed(lambda: est.distance_matrix(n_samples=1024), device))
        cpu.append(time.process_time() - c)
    # Where the time goes: the encoder pass (every agent's Gaussian at every sample) and
    # the all-pairs W2 (per block: a bmm, a square root and a sum over the samples).
    enc, w2 = [], []
    for _ in range(repeat):
        c = time.process_time()
        mu, sigma = est.gaussians(n_samples=1024)
        enc.append(time.process_time() - c)
        c = time.process_time()
        mean_pairwise_gaussian_w2(mu, sigma)
        w2.append(time.process_time() - c)
    out = {
        "n_agents": n,
        "distance_s": statistics.median(times),
        "distance_cpu_s": statistics.median(cpu),
        "encoder_cpu_s": statistics.median(enc),
        "w2_cpu_s": statistics.median(w2),
        "fit_one_epoch_s": fit,
    }
    if compare_old:
        # Same draws for both: the estimator's generator is rewound before each.
        state = est.generator.get_state()
        c = time.process_time()
        old_s = timed(lambda: out.update(old=old_distance(est)), device)
        old_cpu = time.process_time() - c
        est.generator.set_state(state)
        new = est.distance_matrix(n_samples=1024)
        old = out.pop("old")
        out.update(
            old_distance_s=old_s,
            old_distance_cpu_s=old_cpu,
            speedup_vs_old=old_s / out["distance_s"],
            max_abs_diff_vs_old=float((new - old).abs().max()),
            max_distance=float(old.max()),
        )
    return out


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
    add_common_args(p)
    p.add_argument("--no-old", action="store_true", help="skip the pre-issue-21 path (15-25 s at N = 1000)")
    p.add_argument("--interval", type=int, default=100)
    p.add_argument("--ppo-epochs", type=int, default=5)
    p.add_argument("--fit-samples", type=int, default=512)
    args = p.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    sizes = [10, 100] if args.quick else [10, 100, 1000]
    t = time.perf_counter()
    distance = [
        distance_cost(n, device, 256 if n >= 1000 else args.fit_samples // 8, 3, not args.no_old)
        for n in sizes
    ]
    out = {
        "benchmark": "hetdps",
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "distance": distance,
        "amortised": amortised_cost(
            device, args.interval, args.ppo_epochs, 2 if args.quick else 3, args.fit_samples
        ),
    }
    big = distance[-1]
    out["summary"] = [
        {"measure": f"distance matrix, N = {big['n_agents']}, 1024 samples, wall", "value": big["distance_s"],
         "unit": "s", "target": "<= 1", "met": big["distance_s"] <= 1.0},
        {"measure": f"distance matrix, N = {big['n_agents']}, 1024 samples, CPU time", "value": big["distance_cpu_s"],
         "unit": "s", "target": "<= 1", "met": big["distance_cpu_s"] <= 1.0,
         "note": f"encoder {big['encoder_cpu_s']:.2f} s + all-pairs W2 {big['w2_cpu_s']:.2f} s CPU"},
    ]  # fmt: skip
    if "speedup_vs_old" in big:
        out["summary"] += [
            {"measure": f"distance matrix, N = {big['n_agents']}, speedup vs the old path (same run)",
             "value": big["speedup_vs_old"], "unit": "x", "target": None, "met": None},
            {"measure": "max |new - old| (stated tolerance 1e-5 (1 + max d))", "value": big["max_abs_diff_vs_old"],
             "unit": "", "target": f"<= {1e-5 * (1 + big['max_distance']):.2g}",
             "met": big["max_abs_diff_vs_old"] <= 1e-5 * (1 + big["max_distance"])},
        ]  # fmt: skip
    out["summary"].append(
        {"measure": f"hetdps amortised ratio (interval {args.interval})", "value": out["amortised"]["ratio"],
         "unit": "x", "target": "<= 1.05", "met": out["amortised"]["ratio"] <= 1.05}
    )  # fmt: skip
    out["bench_s"] = time.perf_counter() - t
    emit(out, args)


if __name__ == "__main__":
    main()
