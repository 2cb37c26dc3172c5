"""Regenerate docs/performance.md from the benchmarks' JSON files. No number is typed by hand.

Reads ``benchmarks/results/<name>.json`` (each written by a benchmark's ``--out``, with the
run's date, machine, versions and command under ``meta``) and the GPU runs of
benchmarks/gpu.sh under ``benchmarks/results/gpu/<run>/``. Every benchmark becomes a
section: its command and machine, a table of its targets (the ``summary`` rows) and
tables of everything else it measured.

    python benchmarks/report.py [--results benchmarks/results] [--out docs/performance.md] [--check]

``--check`` exits 1 when the page is not what the JSON files give (for CI or a pre-commit).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = [
    "benchmarl_iteration",
    "shep_descriptors",
    "hetdps",
    "shppo_actor_forward_backward",
    "lbs_update",
    "prioritized_sampler",
]
TITLES = {
    "benchmarl_iteration": "BenchMARL iteration with each plugin against without (bench_benchmarl.py)",
    "shep_descriptors": "SHEP descriptors and Moran's I (bench_descriptors.py)",
    "hetdps": "HetDPS distances and amortised cost (bench_hetdps.py)",
    "shppo_actor_forward_backward": "SHPPO actor with a HeteLayer (bench_shppo.py)",
    "lbs_update": "LBS update against the plain DQN update (bench_lbs.py)",
    "prioritized_sampler": "Prioritised sampler (bench_sampler.py)",
}
SKIP = {"meta", "summary", "benchmark", "device", "torch", "threads"}
#: Where the time goes, from the profiles behind issue 21 (words only: every number on the
#: page comes from the JSON files).
FINDINGS = {
    "benchmarl_iteration": (
        "Profile (cProfile and per-call timers, IQL on vmas/navigation): a plugin's cost per "
        "iteration is in BenchMARL's 40 buffer samples (the trajectory draw, then the gather "
        "of the sampled transitions) and 40 priority updates (the TD write-back and the "
        "prioritiser's update), plus SHEP's descriptors and Group-HER at collection. The "
        "variants also train differently (other samples, so other policies and other "
        "environment resets), which moves their iteration times both ways; on this shared "
        "2-core machine the ratios vary from run to run by more than the 5% target. A SHEP "
        "update costs more than a PER one (it rescores every episode of the sampled rows). "
        "Meeting the target would take fewer calls per iteration rather than cheaper ones: "
        "one priority update per iteration for all 40 batches (delayed updates, as "
        "distributed PER does; a change to when priorities take effect) and the same for "
        "the draws."
    ),
    "prioritized_sampler": (
        "hetplug's sampler is a batched sum tree in PyTorch operations: each sample+update "
        "dispatches the ATen calls counted in the note from Python (microseconds each on a "
        "CPU, whatever their size) and gathers rows of arrays larger than the caches, while "
        "TorchRL's descends and updates its trees in C++. Fewer PyTorch calls do not close "
        "a 2x gap: that would take a compiled kernel for the descent and the update (a C++ "
        "extension, or Triton on a GPU)."
    ),
    "hetdps": (
        "The all-pairs W2 dominates the distance matrix: per block of samples a batched "
        "matrix product, an in-place square root and a sum over the samples, each a full "
        "pass over the block; fusing them needs a custom kernel. The encoder pass is the "
        "smaller part (see the note)."
    ),
    "shppo_actor_forward_backward": (
        "Generating one weight matrix per agent from a decoder_hidden-wide code costs "
        "decoder_hidden x in x out multiply-adds per agent in the forward and in each "
        "backward product, whatever the implementation: the notes give the lower bound this "
        "puts on each ratio. Meeting the targets needs a model change (a smaller "
        "decoder_hidden or a factored weight generator), not a faster implementation."
    ),
}


def fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value == 0:
            return "0"
        if abs(value) >= 1e5 or abs(value) < 1e-3:
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def flatten(obj, prefix="") -> dict:
    """Nested dicts -> {"a.b": value}; lists of scalars are joined."""
    out = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}{key}."))
    elif isinstance(obj, list) and not any(isinstance(v, (dict, list)) for v in obj):
        out[prefix[:-1]] = ", ".join(fmt(v) for v in obj)
    else:
        out[prefix[:-1]] = obj
    return out


def table(rows: list[dict], first: str | None = None) -> list[str]:
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    if first and first in columns:
        columns.remove(first)
        columns.insert(0, first)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return lines


def summary_table(rows: list[dict]) -> list[str]:
    shaped = [
        {
            "measure": r.get("measure"),
            "value": f"{fmt(r.get('value'))} {r.get('unit') or ''}".strip(),
            "target": r.get("target") or "",
            "met": "" if r.get("met") is None else ("yes" if r["met"] else "**no**"),
            **({"note": r["note"]} if r.get("note") else {}),
        }
        for r in rows
    ]
    return table(shaped)


def details(data) -> list[str]:
    """Everything but meta and summary: lists of records and dicts of records as tables."""
    lines: list[str] = []
    if isinstance(data, list):
        return table([flatten(r) for r in data]) + [""]
    scalars = {}
    for key, value in data.items():
        if key in SKIP:
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines += [f"**{key}**", ""] + table([flatten(v) for v in value]) + [""]
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            rows = [{key: name, **flatten(v)} for name, v in value.items()]
            lines += [f"**{key}**", ""] + table(rows, first=key) + [""]
        elif isinstance(value, dict):
            rows = [{"quantity": k, "value": v} for k, v in flatten(value).items()]
            lines += [f"**{key}**", ""] + table(rows) + [""]
        else:
            scalars[key] = value
    if scalars:
        lines = [", ".join(f"{k}: {fmt(v)}" for k, v in scalars.items()), ""] + lines
    return lines


def meta_lines(meta: dict | None) -> list[str]:
    if not meta:
        return ["(no run metadata in this file)", ""]
    machine = meta.get("gpu") or meta.get("cpu")
    return [
        f"`{meta.get('command')}`",
        "",
        f"Measured {meta.get('date')} on {machine} ({meta.get('device')}), torch {meta.get('torch')}, "
        f"Python {meta.get('python')}, {meta.get('threads')} thread(s)"
        + (
            f", load average {fmt(meta['load_average_1m'])} when it ended."
            if meta.get("load_average_1m") is not None
            else "."
        ),
        "",
    ]


def cpu_sections(results: Path) -> list[str]:
    files = {}
    for path in sorted(results.glob("*.json")):
        data = json.loads(path.read_text())
        name = data.get("benchmark", path.stem) if isinstance(data, dict) else path.stem
        files[name] = (path, data)
    lines: list[str] = []
    for name in sorted(files, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n)):
        path, data = files[name]
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        lines += [f"## {TITLES.get(name, name)}", "", f"From `{shown}`.", ""]
        lines += meta_lines(data.get("meta") if isinstance(data, dict) else None)
        if isinstance(data, dict) and data.get("summary"):
            lines += ["Targets:", ""] + summary_table(data["summary"]) + [""]
        if name in FINDINGS:
            lines += [f"Where the time goes: {FINDINGS[name]}", ""]
        lines += details(data)
    return lines


def gpu_sections(results: Path) -> list[str]:
    runs = sorted(p for p in (results / "gpu").glob("*/summary.json")) if (results / "gpu").is_dir() else []
    lines = ["## GPU", ""]
    if not runs:
        return lines + [
            "Not measured on GPU: no run of `benchmarks/gpu.sh` has been recorded yet "
            "(`benchmarks/results/gpu/` is empty), so this page makes no GPU claim.",
            "",
        ]
    for path in runs:
        data = json.loads(path.read_text())
        env = data.get("env") or {}
        lines += [
            f"### {path.parent.name}",
            "",
            f"{env.get('gpu')}, CUDA {env.get('cuda')}, torch {env.get('torch')}, Python {env.get('python')}, "
            f"{env.get('date')}. Command: `bash benchmarks/gpu.sh`.",
            "",
            "Steps:",
            "",
        ]
        lines += table(data.get("steps", [])) + [""]
        if data.get("summary"):
            lines += ["Targets:", ""] + summary_table(data["summary"]) + [""]
    return lines


def render(results: Path) -> str:
    lines = [
        "# Performance",
        "",
        "Generated by `python benchmarks/report.py` from the JSON files the benchmarks write",
        "(`--out benchmarks/results/<name>.json`; GPU runs: `benchmarks/gpu.sh`). Do not edit by",
        "hand: rerun the benchmark, then the report. Shared machines are noisy: compare the",
        "ratios measured side by side in one process, not absolute times across runs.",
        "",
    ]
    lines += cpu_sections(results) + gpu_sections(results)
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    p.add_argument("--check", action="store_true", help="exit 1 if the page is out of date")
    args = p.parse_args()
    page = render(Path(args.results))
    out = Path(args.out)
    if args.check:
        current = out.read_text() if out.exists() else ""
        if current != page:
            print(f"{out} is out of date: run python benchmarks/report.py", file=sys.stderr)
            sys.exit(1)
        return
    out.write_text(page)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
