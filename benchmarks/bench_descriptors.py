"""SHEP descriptors throughput, and the ratio against esda computing the same Moran's I.

``moran_vs_esda`` (issue 21's target): Moran's I of 256 density fields on a 32x32 rook
grid in float32 and float64 (the lattice stencil path), the same fields through the
sparse general-weights path, and esda's ``Moran(y, w, permutations=0)`` on a subset of
them, all timed alternately in one process (median of ``--rounds``); speedups are esda's
per-field time x 256 over ours. Targets: >= 300x in both dtypes, float64 <= 2.5x float32.

For B env-steps x N agents x M cells: ``describe`` computes the density field, occupancy
entropy, Moran's I and action diversity in one batched call; ``moran`` times Moran's I
alone on the same density fields, the like-for-like comparison with esda. esda is timed on a subset of the same fields and
its per-field time scaled to B (it is a per-field Python loop; see "esda_fields_timed").
Scaling in N (M = 32x32) and in M (N = 256) shows linear growth.

    OMP_NUM_THREADS=1 python benchmarks/bench_descriptors.py [--quick] [--device cuda] [--out FILE]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import add_common_args, emit, side_by_side, timed  # noqa: E402

from hetplug.shep import describe  # noqa: E402
from hetplug.spatial import GridCells, SpatialWeights, morans_i  # noqa: E402


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


def moran_vs_esda(device, rounds, esda_fields, fields=256, side=32, agents=256):
    """Our Moran's I (lattice and sparse paths, float32 and float64) and esda's, side by side."""
    import esda
    import libpysal

    cells = GridCells((0, 0), (1, 1), (side, side), device=device)
    w = cells.weights
    sparse = SpatialWeights(w.rows, w.cols, w.values, w.num_cells)  # no lattice tag: the sparse path
    pos = torch.rand(fields, agents, 2, generator=torch.Generator().manual_seed(0))
    d32, d64 = cells.density(pos.to(device)), cells.density(pos.double().to(device))
    lat = libpysal.weights.lat2W(side, side, rook=True)
    subset = d64[:esda_fields].cpu().numpy()

    def esda_subset():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [esda.Moran(y, lat, transformation="r", permutations=0).I for y in subset]

    t = side_by_side(
        {
            "float32": lambda: morans_i(d32, cells),
            "float64": lambda: morans_i(d64, cells),
            "float32_sparse": lambda: morans_i(d32, sparse),
            "float64_sparse": lambda: morans_i(d64, sparse),
            "esda_subset": esda_subset,
        },
        device,
        rounds,
        warmup=1,
    )
    esda_all = t["esda_subset"] / esda_fields * fields
    ref = np.array(esda_subset())
    out = {
        "fields": fields,
        "grid": f"{side}x{side} rook, transformation r",
        "esda_fields_timed": esda_fields,
        "esda_seconds_scaled": esda_all,
    }
    for name in ("float32", "float64", "float32_sparse", "float64_sparse"):
        values = morans_i(
            d32 if name.startswith("float32") else d64, cells if "sparse" not in name else sparse
        )
        out[name] = {
            "seconds": t[name],
            "speedup_vs_esda": esda_all / t[name],
            "max_abs_diff_vs_esda": float(np.abs(values[:esda_fields].double().cpu().numpy() - ref).max()),
        }
    out["float64_over_float32"] = t["float64"] / t["float32"]
    out["sparse_float64_over_float32"] = t["float64_sparse"] / t["float32_sparse"]
    return out


def main():
    p = argparse.ArgumentParser()
    add_common_args(p)
    p.add_argument("--quick", action="store_true", help="smaller esda subset and fewer repeats")
    p.add_argument("--rounds", type=int, default=15, help="alternating rounds of moran_vs_esda")
    args = p.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    b, repeat = 1024, 3 if args.quick else 5
    esda_fields = 16 if args.quick else 64
    result = {"benchmark": "shep_descriptors", "device": str(device), "B": b, "torch": torch.__version__}
    mve = moran_vs_esda(device, 5 if args.quick else args.rounds, 8 if args.quick else 16)
    result["moran_vs_esda"] = mve
    result["summary"] = [
        {"measure": "Moran's I, 256 fields 32x32, float32, speedup vs esda", "value": mve["float32"]["speedup_vs_esda"],
         "unit": "x", "target": ">= 300", "met": mve["float32"]["speedup_vs_esda"] >= 300},
        {"measure": "Moran's I, 256 fields 32x32, float64, speedup vs esda", "value": mve["float64"]["speedup_vs_esda"],
         "unit": "x", "target": ">= 300", "met": mve["float64"]["speedup_vs_esda"] >= 300},
        {"measure": "Moran's I, float64 time / float32 time", "value": mve["float64_over_float32"],
         "unit": "x", "target": "<= 2.5", "met": mve["float64_over_float32"] <= 2.5},
        {"measure": "Moran's I, float64, max |ours - esda|", "value": mve["float64"]["max_abs_diff_vs_esda"],
         "unit": "", "target": "<= 1e-10", "met": mve["float64"]["max_abs_diff_vs_esda"] <= 1e-10},
    ]  # fmt: skip

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
    emit(result, args)


if __name__ == "__main__":
    main()
