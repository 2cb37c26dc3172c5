"""Side-by-side timing shared by the benchmarks: alternate the variants, report medians."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

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


def add_common_args(parser: argparse.ArgumentParser, device: str = "cpu") -> None:
    """``--device`` and ``--out`` (also write the JSON line to this file)."""
    parser.add_argument("--device", default=device)
    parser.add_argument(
        "--out", default=None, help="also write the JSON to this file (benchmarks/results/<name>.json)"
    )


def machine(device: torch.device) -> dict[str, object]:
    """Date, machine, versions and the command line, for the report."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS",) if k in os.environ)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        # Other work on a shared machine inflates wall times (ratios suffer less).
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "command": " ".join([env, "python", _script(), *sys.argv[1:]]).strip(),
    }


def _script() -> str:
    """The running script's path relative to the repository root (benchmarks/<name>.py)."""
    script = Path(sys.argv[0]).resolve()
    root = Path(__file__).resolve().parents[1]
    return str(script.relative_to(root)) if script.is_relative_to(root) else script.name


def emit(result: dict, args: argparse.Namespace) -> None:
    """Print ``result`` (plus ``meta``: date, machine, versions, command) as one JSON line,
    and write it to ``args.out`` when given."""
    result = {**result, "meta": machine(torch.device(args.device))}
    line = json.dumps(result)
    print(line, flush=True)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
