"""Cost of one LBS update against the plain independent-DQN update it wraps.

For M learners with B = 32: ``plain`` is one DQN step of every learner on B transitions
of its own buffer (the networks of examples/lbs_pursuit.py, stacked and vmapped);
``lbs`` is the same step preceded by LBS's selection: the p1 draw, every learner's TD on
the K = M*B large batch (online and target forward passes) and the p2 down-sampling.
The two are timed alternately in one process (median of ``--repeat`` rounds) and
reported as a ratio, plus milliseconds per learner.

The host's ``td_fn`` is the benchmark's own (``stacked_td_fn``): for the MLP, the M
learners' online networks on the K shared candidates are one chain of matmuls over the
stacked parameters (the first layer a single [K, in] @ [in, M * 64] product, the others
batched over learners), and the same for the targets: two network calls per update, no
per-learner loop. ``lbs_vmap`` uses examples/lbs_pursuit.py's td_fn instead
(torch.func.vmap over the M networks, two calls) for comparison; both give the same TD
errors (checked at setup). Target (issue 21): M = 8 at most 2x the plain update.

    OMP_NUM_THREADS=1 python benchmarks/bench_lbs.py [--quick] [--network mlp|cnn] [--device cuda] [--out FILE]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import add_common_args, emit, side_by_side  # noqa: E402
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


def stacked_td_fn(net, buffers, gamma):
    """Every learner's TD error on the K candidates, ``[M, K]``, with two network calls.

    For an MLP (``Flatten``, ``Linear``, ``ReLU``) the stacked parameters ``[M, out, in]``
    are applied directly: the shared input goes through one matmul with all M first layers
    side by side, later layers through one batched matmul over the learners. Other
    networks fall back to the example's vmap over the M networks.
    """
    layers = list(net.base)
    if not all(isinstance(m, (nn.Flatten, nn.Linear, nn.ReLU)) for m in layers):
        return large_batch_td(net, buffers, gamma)

    def q_all(params, x):  # x [K, ...] shared by the M learners -> [M, K, actions]
        h = x.float()
        for i, layer in enumerate(layers):
            if isinstance(layer, nn.Flatten):
                h = h.flatten(1)
            elif isinstance(layer, nn.ReLU):
                h = h.relu_()
            else:
                w, b = params[f"{i}.weight"], params[f"{i}.bias"]  # [M, out, in], [M, out]
                if h.dim() == 2:  # shared input: [K, in] @ [in, M * out]
                    h = torch.addmm(b.reshape(-1), h, w.reshape(-1, w.shape[-1]).t())
                    h = h.view(h.shape[0], w.shape[0], -1).transpose(0, 1)
                else:
                    h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        return h

    @torch.inference_mode()
    def td_fn(sources, slots):
        items = buffers.gather(sources, slots)
        q = q_all(net.params, items["obs"])
        q_taken = q.gather(-1, items["action"].expand(q.shape[0], -1).unsqueeze(-1)).squeeze(-1)
        q_next = q_all(net.target, items["next_obs"]).amax(-1)
        return q_taken - (items["reward"] + gamma * (1.0 - items["done"]) * q_next)

    return td_fn


def measure(M, B, network, device, repeat):
    buffers, lbs, net = setup(M, B, network, device)
    gen = torch.Generator(device).manual_seed(1)
    td_fn = stacked_td_fn(net, buffers, 0.99)
    td_vmap = large_batch_td(net, buffers, 0.99)
    check = torch.arange(M * B, device=device) % len(buffers)
    sources = torch.arange(M, device=device).repeat_interleave(B)
    torch.testing.assert_close(td_fn(sources, check), td_vmap(sources, check), atol=1e-5, rtol=1e-5)
    own = torch.arange(M, device=device).unsqueeze(1).expand(M, B)
    ones = torch.ones(M, B, device=device)

    def plain():
        slots = torch.randint(len(buffers), (M, B), generator=gen, device=device)
        dqn_update(net, buffers.gather(own, slots), ones, 0.99)

    def lbs_update(fn):
        s = lbs.sample(B, fn, gen)
        dqn_update(net, buffers.gather(s.sources, s.indices), s.weights, 0.99)

    t = side_by_side(
        {"plain": plain, "lbs": lambda: lbs_update(td_fn), "lbs_vmap": lambda: lbs_update(td_vmap)},
        device,
        repeat,
    )
    p, q = t["plain"], t["lbs"]
    return {
        "M": M,
        "B": B,
        "K": M * B,
        "plain_ms": 1e3 * p,
        "lbs_ms": 1e3 * q,
        "lbs_vmap_ms": 1e3 * t["lbs_vmap"],
        "plain_ms_per_learner": 1e3 * p / M,
        "lbs_ms_per_learner": 1e3 * q / M,
        "ratio": q / p,
        "ratio_vmap_td_fn": t["lbs_vmap"] / p,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="M in {4, 8} and fewer repeats")
    ap.add_argument("--network", choices=["mlp", "cnn"], default="mlp")
    add_common_args(ap)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    device = torch.device(args.device)
    sizes = [4, 8] if args.quick else [4, 8, 64]
    repeat = 5 if args.quick else args.repeat
    rows = [measure(M, 32, args.network, device, repeat) for M in sizes]
    summary = [
        {"measure": f"LBS update / plain DQN update, M = {r['M']}", "value": r["ratio"], "unit": "x",
         "target": "<= 2" if r["M"] == 8 else None, "met": r["ratio"] <= 2 if r["M"] == 8 else None}
        for r in rows
    ]  # fmt: skip
    emit(
        {
            "benchmark": "lbs_update",
            "device": str(device),
            "network": args.network,
            "threads": torch.get_num_threads(),
            "rows": rows,
            "summary": summary,
            "note": "the large-batch TD pass costs M forward passes on K = M*B items per learner "
            "set (M^2 B evaluations), so the ratio grows with M",
        },
        args,
    )


if __name__ == "__main__":
    main()
