"""Side-by-side timing shared by the benchmarks: alternate the variants, report medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def timed(fn: Callable[[], None], device: torch.device) -> float:
    """Seconds for one call of ``fn``, synchronising CUDA around it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def side_by_side(
    variants: dict[str, Callable[[], None]], device: torch.device, repeat: int, warmup: int = 2
) -> dict[str, float]:
    """Median seconds per call of each variant, timed alternately in one process so that
    machine noise hits all of them alike."""

    for _ in range(warmup):
        for fn in variants.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeat):
        for name, fn in variants.items():
            samples[name].append(timed(fn, device))
    return {name: statistics.median(v) for name, v in samples.items()}
