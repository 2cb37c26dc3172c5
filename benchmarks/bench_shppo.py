"""Forward+backward time of an actor with a HeteLayer against the same actor with a plain
shared Linear in its place, side by side in one process.

Actor: obs 64 -> 64 -> 64 (shared trunk) -> [HeteLayer | Linear] 64 -> 64 -> head 10.
Batch: 4096 agent-rows in total, shaped ``[ceil(4096 / n), n, 64]`` for n agents.
Two latent layouts:
- ``per_row``: a latent per row ``[rows, n, 3]``, as in SHPPO training (the latent depends
  on o_i^t and h_i^{t-1}); every row has its own generated weight.
- ``per_agent``: one latent per agent ``[n, 3]`` shared by the batch (a fixed team);
  each agent's weight is generated once.

Targets (issue 21): per_agent <= 1.3x at n = 100 and <= 2x at n = 1000. The per-row
layout costs about decoder_hidden times a plain Linear by construction (README).

    OMP_NUM_THREADS=1 python benchmarks/bench_shppo.py [--quick] [--device cuda] [--decoder-hidden 64] [--out FILE]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import math
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

from hetplug.shppo import SHPPOActor  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import add_common_args, emit, side_by_side  # noqa: E402


class PlainActor(nn.Module):
    """SHPPOActor's layout with a shared Linear where the HeteLayer sits."""

    def __init__(self, obs_dim, out_dim, hidden=64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_dim),
        )  # fmt: skip

    def forward(self, obs, latent=None):
        return self.net(obs), None


def measure(n, layout, device, repeat, decoder_hidden, batch=4096):
    torch.manual_seed(0)
    rows = math.ceil(batch / n)
    obs = torch.randn(rows, n, 64, device=device)
    latent = (
        torch.randn(rows, n, 3, device=device) if layout == "per_row" else torch.randn(n, 3, device=device)
    )
    hete = SHPPOActor(64, 10, decoder_hidden=decoder_hidden).to(device)
    plain = PlainActor(64, 10).to(device)

    def step(model):
        out, _ = model(obs, latent)
        out.square().mean().backward()

    t = side_by_side({"plain": lambda: step(plain), "hete": lambda: step(hete)}, device, repeat, warmup=3)
    p, h = t["plain"], t["hete"]
    # Multiply-adds: the plain actor's Linears per row, and the generation of each distinct
    # latent's HeteLayer weight (decoder_hidden x in x out, the HeteLayer docstring's
    # bound). Backward costs about twice forward for both, so 1 + generation / plain
    # bounds the ratio from below, whatever the implementation.
    plain_macs = (
        rows * n * sum(m.in_features * m.out_features for m in plain.modules() if isinstance(m, nn.Linear))
    )
    latents = n if layout == "per_agent" else rows * n
    generation_macs = latents * decoder_hidden * 64 * 64
    return {
        "n": n,
        "rows": rows * n,
        "layout": layout,
        "plain_ms": 1e3 * p,
        "hete_ms": 1e3 * h,
        "ratio": h / p,
        "flop_bound_ratio": 1 + generation_macs / plain_macs,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    add_common_args(ap)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--decoder-hidden", type=int, default=64, help="Table IV: 64")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    device = torch.device(args.device)
    ns = [3, 100] if args.quick else [3, 10, 100, 1000]
    repeat = 5 if args.quick else args.repeat
    rows = [
        measure(n, layout, device, repeat, args.decoder_hidden)
        for n in ns
        for layout in ("per_row", "per_agent")
    ]
    targets = {100: 1.3, 1000: 2.0}
    summary = [
        {"measure": f"per-agent latent actor / plain actor, n = {r['n']}", "value": r["ratio"], "unit": "x",
         "target": f"<= {targets[r['n']]}", "met": r["ratio"] <= targets[r["n"]],
         "note": f"multiply-add lower bound at decoder_hidden={args.decoder_hidden}: {r['flop_bound_ratio']:.2f}x "
                 f"(weight generation for {r['n']} agents against the plain actor's {r['rows']} rows)"}
        for r in rows if r["layout"] == "per_agent" and r["n"] in targets
    ]  # fmt: skip
    emit(
        {
            "benchmark": "shppo_actor_forward_backward",
            "device": str(device),
            "threads": torch.get_num_threads(),
            "decoder_hidden": args.decoder_hidden,
            "target_ratio": 1.3,
            "rows": rows,
            "summary": summary,
        },
        args,
    )


if __name__ == "__main__":
    main()
