"""SHEP descriptors throughput, and the ratio against esda computing the same Moran's I.

For B env-steps x N agents x M cells: ``describe`` computes the density field, occupancy
entropy, Moran's I and action diversity in one batched call; ``moran`` times Moran's I
alone on the same density fields, the like-for-like comparison with esda. esda is timed on a subset of the same fields and
its per-field time scaled to B (it is a per-field Python loop; see "esda_fields_timed").
Scaling in N (M = 32x32) and in M (N = 256) shows linear growth.

    OMP_NUM_THREADS=1 python benchmarks/bench_descriptors.py [--quick] [--device cuda]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import timed  # noqa: E402

from hetplug.shep import describe  # noqa: E402
from hetplug.spatial import GridCells, morans_i  # noqa: E402


def timeit(fn, device, repeat):
    fn()  # warm-up
    return min(timed(fn, device) for _ in range(repeat))


def ours(b, n, side, device, repeat):
    cells = GridCells((0, 0), (1, 1), (side, side), device=device)
    g = torch.Generator().manual_seed(0)
    pos = torch.rand(b, n, 2, generator=g).to(device)
    act = torch.randint(0, 5, (b, n), generator=g).to(device)
    out = {}

    def run():
        out["d"] = describe(cells, pos, actions=act, n_actions=5)

    seconds = timeit(run, device, repeat)
    return seconds, cells, pos, out["d"]


def esda_per_field(cells, pos, side, fields):
    import esda
    import libpysal

    w = libpysal.weights.lat2W(side, side, rook=True)
    dens = cells.density(pos[:fields].cpu().double()).numpy()
    values = []
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for y in dens:
            values.append(esda.Moran(y, w, transformation="r", permutations=0).I)
    per_field = (time.perf_counter() - t) / fields
    return per_field, np.array(values)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="smaller esda subset and fewer repeats")
    args = p.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    b, repeat = 1024, 3 if args.quick else 5
    esda_fields = 16 if args.quick else 64
    result = {"benchmark": "shep_descriptors", "device": str(device), "B": b, "torch": torch.__version__}

    by_n = {}
    for n in (16, 256, 4096):
        sec, cells, pos, d = ours(b, n, 32, device, repeat)
        entry = {"describe_seconds": sec, "env_steps_per_s": b / sec}
        if n in (256, 4096):
            # Like for like: esda and hetplug each compute Moran's I of the same B fields.
            dens = cells.density(pos)
            moran_sec = timeit(lambda dens=dens, cells=cells: morans_i(dens, cells), device, repeat)
            per_field, ref = esda_per_field(cells, pos, 32, esda_fields)
            err = float(np.abs(d.moran[:esda_fields].double().cpu().numpy() - ref).max())
            entry.update(
                moran_seconds=moran_sec,
                esda_moran_seconds_scaled_to_B=per_field * b,
                moran_speedup_vs_esda=per_field * b / moran_sec,
                describe_speedup_vs_esda_moran_alone=per_field * b / sec,
                max_abs_diff_vs_esda=err,
            )
        by_n[str(n)] = entry
    result["M=32x32, by N"] = by_n

    by_m = {}
    for side in (16, 32, 64):
        sec, *_ = ours(b, 256, side, device, repeat)
        by_m[f"{side}x{side}"] = {"M": side * side, "describe_seconds": sec}
    result["N=256, by M"] = by_m
    result["esda_fields_timed"] = esda_fields
    print(json.dumps(result))


if __name__ == "__main__":
    main()
