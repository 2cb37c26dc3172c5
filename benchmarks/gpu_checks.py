"""The Python steps of benchmarks/gpu.sh: machine facts, a large descriptor pass, a
host-synchronisation check of every plugin's per-step hooks, and the run's summary.

    python benchmarks/gpu_checks.py env --out DIR/env.json
    python benchmarks/gpu_checks.py descriptors --device cuda --out DIR/descriptors_10k.json
    python benchmarks/gpu_checks.py sync --device cuda --out DIR/sync.json
    python benchmarks/gpu_checks.py summary DIR

``sync`` calls trajectories_collected, replay_add, replay_sample and update_priorities of
each plugin (per, shep, lbs, hetdps) on tensors of ``--device``, with ``check_inputs=False``
where the plugin has input checks. On CUDA each hook runs under
``torch.cuda.set_sync_debug_mode("warn")`` (every synchronising call site is recorded) and
then ``"error"`` (the verdict). On the CPU (``gpu.sh --dry-run``) nothing synchronises, so
the same calls run with an audit of the host round-trips that would synchronise on a GPU
(``item``, ``bool``/``int``/``float`` of a tensor, ``tolist``, ``cpu``, ``numpy``,
``nonzero``), each reported with its hetplug call site.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import sys
import time
import traceback
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import timed  # noqa: E402

import hetplug  # noqa: E402


def write(payload: dict, out: str | None) -> None:
    line = json.dumps(payload)
    print(line, flush=True)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(payload, indent=1) + "\n")


# ----------------------------------------------------------------------------------- env
def env(args) -> None:
    cuda = torch.cuda.is_available()
    write(
        {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "cuda": torch.version.cuda,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "device": args.device,
        },
        args.out,
    )


# --------------------------------------------------------------------------- descriptors
def descriptors(args) -> None:
    """describe() (density, H_occ, Moran's I, H_div) for 10k agents on 64x64 cells, per step."""
    from hetplug.shep import describe
    from hetplug.spatial import GridCells

    device = torch.device(args.device)
    cells = GridCells((0, 0), (1, 1), (64, 64), device=device)
    g = torch.Generator().manual_seed(0)
    rows = []
    for steps in (1, 16, 64):
        pos = torch.rand(steps, args.agents, 2, generator=g).to(device)
        act = torch.randint(0, 5, (steps, args.agents), generator=g).to(device)

        def run(pos=pos, act=act):
            describe(cells, pos, actions=act, n_actions=5)

        for _ in range(3):
            run()
        times = sorted(timed(run, device) for _ in range(args.repeat))
        seconds = times[len(times) // 2]
        rows.append({"steps": steps, "seconds": seconds, "ms_per_step": 1e3 * seconds / steps})
    single = rows[0]["ms_per_step"]
    write(
        {
            "benchmark": "descriptors_10k_agents",
            "device": str(device),
            "agents": args.agents,
            "cells": "64x64",
            "rows": rows,
            "summary": [
                {
                    "measure": f"describe, {args.agents} agents, 64x64 cells, one step",
                    "value": single,
                    "unit": "ms",
                    "target": "<= 1",
                    "met": single <= 1.0,
                },
            ],  # fmt: skip
        },
        args.out,
    )


# ---------------------------------------------------------------------------------- sync
_AUDITED = {
    torch.Tensor: ("item", "__bool__", "__int__", "__float__", "tolist", "cpu", "numpy", "nonzero"),
    torch: ("nonzero",),
}


@contextlib.contextmanager
def host_roundtrip_audit(sites: list[str]):
    """Record every Tensor -> host conversion made from hetplug code (CPU dry run)."""
    saved = []

    def wrap(owner, name, original):
        def audited(*a, **k):
            for frame in reversed(traceback.extract_stack()[:-1]):
                if "/hetplug/" in frame.filename and "benchmarks" not in frame.filename:
                    sites.append(f"{name} at {Path(frame.filename).relative_to(ROOT)}:{frame.lineno}")
                    break
            return original(*a, **k)

        return audited

    for owner, names in _AUDITED.items():
        for name in names:
            original = getattr(owner, name)
            saved.append((owner, name, original))
            setattr(owner, name, wrap(owner, name, original))
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def _batch(device, b=8, t=20, n=4, obs_dim=6):
    g = torch.Generator().manual_seed(0)
    return hetplug.TrajectoryBatch(
        reward=torch.rand(b, t, generator=g).to(device),
        mask=torch.ones(b, t, dtype=torch.bool).to(device),
        done=torch.zeros(b, t, dtype=torch.bool).to(device),
        obs=torch.rand(b, t, n, obs_dim, generator=g).to(device),
        actions=torch.randint(0, 5, (b, t, n), generator=g).to(device),
        positions=torch.rand(b, t, n, 2, generator=g).to(device),
    )


VARIANTS = {
    "per": ("per", {"check_inputs": False}),
    "shep": ("shep", {"grid_shape": (8, 8), "check_inputs": False}),
    "shep+intrinsic": ("shep", {"grid_shape": (8, 8), "check_inputs": False, "intrinsic_reward": True}),
    "lbs": ("lbs", {"check_inputs": False}),
    "hetdps": ("hetdps", {"interval": 100}),
}
"""Checked configurations: label -> (plugin, options); input checks off where there are any."""


def _plugin_calls(label: str, device: torch.device):
    """(plugin manager, [(hook name, call)]) for one plugin's per-step hooks."""
    n, b, t = 4, 8, 20
    name, options = VARIANTS[label]
    pm = hetplug.get_plugin_manager([name], {name: options})
    spec = hetplug.HostSpec(
        n_agents=n, max_steps=1 if name == "lbs" else t, capacity=64, device=device, n_actions=5
    )
    pm.hook.hetplug_configure.call_historic(kwargs={"spec": spec})
    batch = _batch(device, b=b, t=1 if name == "lbs" else t, n=n)
    gen = torch.Generator(device=device).manual_seed(0)
    state = {}

    def td_fn(sources, slots):
        return torch.rand(n, sources.shape[0], generator=gen, device=device)

    def sample():
        state["sample"] = pm.hook.hetplug_replay_sample(batch_size=4, generator=gen, td_fn=td_fn)

    def update():
        s = state.get("sample")
        if s is None:
            return
        td = torch.rand(s.indices.shape[-1], batch.max_steps, generator=gen, device=device)
        pm.hook.hetplug_update_priorities(
            indices=s.indices.reshape(-1)[: td.shape[0]], td_error=td, mask=None
        )

    calls = [
        ("trajectories_collected", lambda: pm.hook.hetplug_trajectories_collected(batch=batch)),
        ("replay_add", lambda: pm.hook.hetplug_replay_add(batch=batch)),
        ("replay_sample", sample),
        ("update_priorities", update),
    ]
    return pm, calls


def sync(args) -> None:
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    results = []
    for plugin in VARIANTS:
        try:
            pm, calls = _plugin_calls(plugin, device)
            for _, call in calls:  # warm-up: first-call allocations and lazy state
                call()
        except Exception as err:
            results.append(
                {"plugin": plugin, "hook": "setup", "ok": False, "error": f"{type(err).__name__}: {err}"}
            )
            continue
        for hook, call in calls:
            implemented = any(
                getattr(impl.function, "__name__", "") == f"hetplug_{hook}"
                for impl in getattr(pm.hook, f"hetplug_{hook}").get_hookimpls()
            )
            row = {"plugin": plugin, "hook": hook, "implemented": implemented}
            sites: list[str] = []
            try:
                if cuda:
                    torch.cuda.synchronize()
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        torch.cuda.set_sync_debug_mode("warn")
                        try:
                            call()
                        finally:
                            torch.cuda.set_sync_debug_mode("default")
                    sites = [f"{Path(w.filename).name}:{w.lineno}: {str(w.message)[:80]}" for w in caught]
                    torch.cuda.set_sync_debug_mode("error")
                    try:
                        call()
                    finally:
                        torch.cuda.set_sync_debug_mode("default")
                else:
                    with host_roundtrip_audit(sites):
                        call()
                row.update(ok=not sites, syncs=sorted(set(sites)))
            except Exception as err:  # under "error", the first synchronising call raises
                row.update(
                    ok=False, syncs=sorted(set(sites)), error=f"{type(err).__name__}: {str(err)[:200]}"
                )
            results.append(row)
    checked = [r for r in results if r.get("implemented", True)]
    write(
        {
            "check": "per_step_host_sync",
            "device": str(device),
            "mode": "cuda set_sync_debug_mode" if cuda else "cpu audit of host round-trips (dry run)",
            "results": results,
            "summary": [
                {
                    "measure": "plugin per-step hooks free of host synchronisation",
                    "value": sum(r["ok"] for r in checked),
                    "unit": f"of {len(checked)}",
                    "target": f"{len(checked)} of {len(checked)}",
                    "met": all(r["ok"] for r in checked),
                },
            ],  # fmt: skip
        },
        args.out,
    )


# ------------------------------------------------------------------------------- summary
def summary(args) -> None:
    """Collect every step's status and every JSON's summary rows into DIR/summary.json."""
    folder = Path(args.dir)
    steps = []
    status = folder / "steps.jsonl"
    if status.exists():
        steps = [json.loads(line) for line in status.read_text().splitlines() if line.strip()]
    rows = []
    for path in sorted(folder.glob("*.json")):
        if path.name in ("summary.json",):
            continue
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        for row in data.get("summary", []) if isinstance(data, dict) else []:
            rows.append({"file": path.name, **row})
    env_file = folder / "env.json"
    payload = {
        "env": json.loads(env_file.read_text()) if env_file.exists() else None,
        "steps": steps,
        "failed_steps": [s["step"] for s in steps if s.get("rc") not in (0, None)],
        "summary": rows,
    }
    write(payload, str(folder / "summary.json"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("env", "descriptors", "sync"):
        s = sub.add_parser(name)
        s.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        s.add_argument("--out", default=None)
        if name == "descriptors":
            s.add_argument("--agents", type=int, default=10_000)
            s.add_argument("--repeat", type=int, default=20)
    s = sub.add_parser("summary")
    s.add_argument("dir")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    started = time.perf_counter()
    {"env": env, "descriptors": descriptors, "sync": sync, "summary": summary}[args.command](args)
    if args.command != "summary":
        print(f"{args.command}: {time.perf_counter() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
