"""PrioritizedSampler throughput beside TorchRL's PrioritizedSampler and a numpy baseline.

At 1e5 and 1e6 stored items, all samplers hold the same priorities (alpha 0.6, beta 0.4)
and run the training-loop pattern sample(256) + update(256 new priorities), the same new
priorities for each, alternately in one process (median of ``--rounds``), in items per
second; plus extend (add) throughput. The samplers alone are timed, without a storage.

TorchRL's sampler (``torchrl.data.PrioritizedSampler``, the version BenchMARL installs)
needs torchrl's C++ extension; where it does not load (FACTS.md: torchrl 0.11-0.14 with
torch 2.13.0), the JSON says ``"available": false`` with the error instead of a number.
``--torchrl-extension PATH`` loads a separately built ``_torchrl`` extension module from
PATH (the benchmark only imports it; building it is outside this repository).

    OMP_NUM_THREADS=1 python benchmarks/bench_sampler.py [--device cuda] [--rounds 200] [--out FILE]

Target (issue 21): hetplug >= 2x TorchRL's sampler at 1e6 items, in the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import add_common_args, emit, side_by_side  # noqa: E402

from hetplug.replay import PrioritizedSampler  # noqa: E402

BATCH = 256


class CumsumSampler:
    """The simple baseline: priorities in a numpy array, O(n) per sample call."""

    def __init__(self, capacity, alpha=0.6, beta=0.4, seed=0):
        self.p = np.zeros(capacity)
        self.size, self.cursor, self.alpha, self.beta = 0, 0, alpha, beta
        self.rng = np.random.default_rng(seed)

    def add(self, pri):
        idx = (self.cursor + np.arange(len(pri))) % len(self.p)
        self.p[idx] = pri**self.alpha
        self.cursor = (self.cursor + len(pri)) % len(self.p)
        self.size = min(len(self.p), self.size + len(pri))
        return idx

    def sample(self, b):
        c = np.cumsum(self.p[: self.size])
        idx = np.searchsorted(c, self.rng.random(b) * c[-1], side="right").clip(0, self.size - 1)
        prob = self.p[idx] / c[-1]
        w = (self.size * prob) ** -self.beta
        return idx, w / w.max()

    def update(self, idx, pri):
        self.p[idx] = pri**self.alpha


class _Filled:
    """The part of a torchrl Storage its sampler reads: the number of stored items."""

    ndim = 1

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def load_torchrl_extension(path: str) -> None:
    """Register a separately built torchrl C++ extension as ``torchrl._torchrl`` (before torchrl imports)."""
    spec = importlib.util.spec_from_file_location("torchrl._torchrl", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["torchrl._torchrl"] = module


def torchrl_sampler(n: int):
    """TorchRL's PrioritizedSampler, or ``(None, error)`` when it cannot be built here."""
    try:
        import logging

        logging.getLogger("torchrl").setLevel(logging.ERROR)  # keep stdout pure JSON
        from torchrl.data import PrioritizedSampler as TorchRLSampler

        return TorchRLSampler(n, alpha=0.6, beta=0.4), None
    except Exception as err:  # ImportError, or RuntimeError: SumSegmentTreeFp32 is not available
        return None, f"{type(err).__name__}: {err}"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def aten_calls(fn, calls: int = 20) -> float:
    """Top-level ATen operator calls per call of ``fn`` (torch.profiler; nested calls such
    as a ``to``'s copy are not counted again)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            fn()
    return sum(1 for e in prof.events() if e.cpu_parent is None and e.name.startswith("aten::")) / calls


def bench(n: int, rounds: int, device: torch.device, chunk: int = 1000) -> dict:
    # float32 priorities, as TD errors come (TorchRL's float32 tree asserts on float64 input).
    g = torch.Generator().manual_seed(n)
    pri = torch.rand(n, generator=g) + 0.01
    new = torch.rand(rounds + 4, BATCH, generator=g) + 0.01
    out: dict = {"items": n, "batch": BATCH}

    ours = PrioritizedSampler(n, alpha=0.6, beta=0.4, device=device)
    pri_dev = pri.to(device)
    sync(device)
    t = time.perf_counter()
    for i in range(0, n, chunk):
        ours.add(pri_dev[i : i + chunk])
    sync(device)
    out["hetplug_extend_items_per_s"] = n / (time.perf_counter() - t)
    gen = torch.Generator(device=device).manual_seed(0)
    new_dev = new.to(device)

    numpy_sampler = CumsumSampler(n)
    t = time.perf_counter()
    for i in range(0, n, chunk):
        numpy_sampler.add(pri[i : i + chunk].numpy())
    out["numpy_cumsum_extend_items_per_s"] = n / (time.perf_counter() - t)
    new_np = new.numpy()

    theirs, error = torchrl_sampler(n)
    out["torchrl"] = {"available": theirs is not None, "error": error}
    if theirs is not None:
        import torchrl

        out["torchrl"]["version"] = torchrl.__version__
        t = time.perf_counter()
        for i in range(0, n, chunk):
            index = torch.arange(i, min(n, i + chunk))
            theirs.extend(index)
            theirs.update_priority(index, pri[i : i + chunk])
        out["torchrl"]["extend_items_per_s"] = n / (time.perf_counter() - t)
    storage = _Filled(n)

    step = {"hetplug": 0, "torchrl": 0, "numpy": 0}

    def run_ours():
        batch = ours.sample(BATCH, gen)
        ours.update(batch.indices, new_dev[step["hetplug"] % len(new)])
        step["hetplug"] += 1

    def run_theirs():
        index, _ = theirs.sample(storage, BATCH)
        theirs.update_priority(index, new[step["torchrl"] % len(new)])
        step["torchrl"] += 1

    def run_numpy():
        idx, _ = numpy_sampler.sample(BATCH)
        numpy_sampler.update(idx, new_np[step["numpy"] % len(new)])
        step["numpy"] += 1

    variants = {"hetplug": run_ours, "numpy": run_numpy}
    if theirs is not None:
        variants["torchrl"] = run_theirs
    seconds = side_by_side(variants, device, rounds)
    # Where the time goes: ATen calls dispatched from Python per sample+update (each costs
    # microseconds of dispatch on the CPU, whatever its size), for ours and TorchRL's.
    out["aten_calls_per_sample_update"] = {name: aten_calls(fn) for name, fn in variants.items()}
    out["hetplug_sample_update_items_per_s"] = BATCH / seconds["hetplug"]
    out["numpy_cumsum_sample_update_items_per_s"] = BATCH / seconds["numpy"]
    out["ratio_vs_numpy"] = seconds["numpy"] / seconds["hetplug"]
    if theirs is not None:
        out["torchrl"]["sample_update_items_per_s"] = BATCH / seconds["torchrl"]
        out["ratio_vs_torchrl"] = seconds["torchrl"] / seconds["hetplug"]
    return out


def main():
    p = argparse.ArgumentParser()
    add_common_args(p)
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--torchrl-extension", default=None, help="path of a built torchrl _torchrl extension")
    args = p.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    if args.torchrl_extension:
        load_torchrl_extension(args.torchrl_extension)
    result = {
        "benchmark": "prioritized_sampler",
        "device": str(device),
        "batch": BATCH,
        "torch": torch.__version__,
    }
    for n in (100_000, 1_000_000):
        result[str(n)] = bench(n, args.rounds, device)
    big = result["1000000"]
    calls = big["aten_calls_per_sample_update"]
    available = big["torchrl"]["available"]
    result["summary"] = [
        {
            "measure": "hetplug sample+update, 1e6 items, batch 256",
            "value": big["hetplug_sample_update_items_per_s"],
            "unit": "items/s",
            "target": None,
            "met": None,
        },
        {
            "measure": "hetplug / TorchRL PrioritizedSampler, 1e6 items (same run)",
            "value": big.get("ratio_vs_torchrl"),
            "unit": "x",
            "target": ">= 2",
            "met": big["ratio_vs_torchrl"] >= 2 if available else None,
            "note": (
                f"per sample+update, hetplug dispatches {calls['hetplug']:.0f} ATen calls from Python, "
                f"TorchRL {calls['torchrl']:.0f} (its sum tree descends and updates in C++)"
                if available
                else f"TorchRL's sampler not available here: {big['torchrl']['error']}"
            ),
        },
    ]
    result["torchrl_extension"] = args.torchrl_extension
    emit(result, args)


if __name__ == "__main__":
    main()
