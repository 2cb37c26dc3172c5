"""Cost of one LBS update against the plain independent-DQN update it wraps.

For M learners with B = 32: ``plain`` is one DQN step of every learner on B transitions
of its own buffer (the networks of examples/lbs_pursuit.py, stacked and vmapped);
``lbs`` is the same step preceded by LBS's selection: the p1 draw, every learner's TD on
the K = M*B large batch (online and target forward passes) and the p2 down-sampling.
The two are timed alternately in one process (median of ``--repeat`` rounds) and
reported as a ratio, plus milliseconds per learner.

    OMP_NUM_THREADS=1 python benchmarks/bench_lbs.py [--quick] [--network mlp|cnn] [--device cuda]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import side_by_side  # noqa: E402
from lbs_pursuit import IndependentQ, dqn_update, large_batch_td  # noqa: E402

from hetplug.lbs import AgentBuffers, LargeBatchSharing  # noqa: E402


def setup(M, B, network, device, capacity=2000):
    g = torch.Generator().manual_seed(0)
    buffers = AgentBuffers(M, capacity, device=device)
    n = capacity
    buffers.add(
        {
            "obs": torch.randint(0, 2, (n, M, 7, 7, 3), generator=g).half().to(device),
            "action": torch.randint(0, 5, (n, M), generator=g).to(device),
            "reward": torch.randn(n, M, generator=g).to(device),
            "next_obs": torch.randint(0, 2, (n, M, 7, 7, 3), generator=g).half().to(device),
            "done": torch.zeros(n, M).to(device),
        }
    )
    lbs = LargeBatchSharing(M, capacity, device=device)
    lbs.add(n)
    net = IndependentQ(network, M, 1.6e-4, device, seed=0)
    return buffers, lbs, net


def measure(M, B, network, device, repeat):
    buffers, lbs, net = setup(M, B, network, device)
    gen = torch.Generator(device).manual_seed(1)
    td_fn = large_batch_td(net, buffers, 0.99)
    own = torch.arange(M, device=device).unsqueeze(1).expand(M, B)
    ones = torch.ones(M, B, device=device)

    def plain():
        slots = torch.randint(len(buffers), (M, B), generator=gen, device=device)
        dqn_update(net, buffers.gather(own, slots), ones, 0.99)

    def lbs_update():
        s = lbs.sample(B, td_fn, gen)
        dqn_update(net, buffers.gather(s.sources, s.indices), s.weights, 0.99)

    t = side_by_side({"plain": plain, "lbs": lbs_update}, device, repeat)
    p, q = t["plain"], t["lbs"]
    return {
        "M": M,
        "B": B,
        "K": M * B,
        "plain_ms": 1e3 * p,
        "lbs_ms": 1e3 * q,
        "plain_ms_per_learner": 1e3 * p / M,
        "lbs_ms_per_learner": 1e3 * q / M,
        "ratio": q / p,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="M in {4, 8} and fewer repeats")
    ap.add_argument("--network", choices=["mlp", "cnn"], default="mlp")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    device = torch.device(args.device)
    sizes = [4, 8] if args.quick else [4, 8, 64]
    repeat = 5 if args.quick else args.repeat
    rows = [measure(M, 32, args.network, device, repeat) for M in sizes]
    print(
        json.dumps(
            {
                "benchmark": "lbs_update",
                "device": str(device),
                "network": args.network,
                "threads": torch.get_num_threads(),
                "rows": rows,
                "note": "the large-batch TD pass costs M forward passes on K = M*B items per learner "
                "set (M^2 B evaluations), so the ratio grows with M",
            }
        )
    )


if __name__ == "__main__":
    main()
