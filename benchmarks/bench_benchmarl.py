"""Time per BenchMARL training iteration with each hetplug plugin against without.

Each variant is a real BenchMARL experiment (VMAS task, same seed and settings). One
"iteration" is what BenchMARL's loop does per collection: collect, callbacks, extend,
`updates` optimiser steps, on_train_end, policy-weight update. The variants' iterations
are timed alternately in one process (as _timing.side_by_side, medians), by the wall clock
and, on the CPU, by the process's CPU time too (which leaves out the time other jobs on a
shared machine take from it); prints JSON. The target rows use the CPU time on the CPU and
the wall clock on a GPU.

    OMP_NUM_THREADS=1 python benchmarks/bench_benchmarl.py [--json benchmarks/results/bench_benchmarl.json]
    python benchmarks/bench_benchmarl.py --device cuda --algorithms iql qmix

``--out`` is the folder of BenchMARL's runs; ``--json`` also writes the printed JSON (rows,
target summary and run metadata) to a file for benchmarks/report.py.

Targets: PER and SHEP at most 1.05x (issue 21); HetDPS (interval 100) at most 1.05x, measured
with `--model slot --plugins hetdps` (both variants then use the slot model); SHPPO at most
1.30x, measured with `--algorithms mappo --model shppo --plugins shppo`. MAPPO/IPPO run 1000-frame rollouts with 40
minibatches of 200 per iteration (5 epochs), the off-policy ones 40 updates of 256.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import machine  # noqa: E402

#: largest iteration time with the plugin over without (None: no target)
TARGETS = {"per": 1.05, "shep": 1.05, "hetdps": 1.05, "shppo": 1.30}


def experiment(
    algorithm: str, plugins: list[str], options: dict, task: str, model: str, device: str, out: Path
):
    """A BenchMARL experiment as ``hetplug compare`` builds it (1000 frames and 40 updates
    per iteration, 20 envs), without evaluation or json output, never ending."""
    from benchmarl.experiment import Experiment
    from benchmarl.models.mlp import MlpConfig

    from hetplug_benchmarl.compare.run import experiment_config, hetplug_callback, model_config
    from hetplug_benchmarl.compare.spec import RunSpec, Settings, Variant, algorithms
    from hetplug_benchmarl.compare.tasks import load_task

    logging.getLogger("torchrl").setLevel(logging.WARNING)  # after torchrl set its own: stdout stays JSON

    settings = Settings(frames=10**9, frames_per_batch=1000, envs=20, updates=40, device=device)
    run = RunSpec(f"vmas/{task}", Variant(algorithm, tuple(plugins)), 0, model, settings, options)
    cfg = experiment_config(run, out)
    cfg.evaluation = cfg.create_json = False
    callback = hetplug_callback(plugins, options)
    return Experiment(task=load_task(run.task), algorithm_config=algorithms()[algorithm].get_from_yaml(),
                      model_config=model_config(model), critic_model_config=MlpConfig.get_from_yaml(), seed=0,
                      config=cfg, callbacks=[callback] if callback is not None else [])  # fmt: skip


def iteration(exp, iterator):
    def step():
        batch = next(iterator)
        exp.total_frames += batch.numel()
        exp._on_batch_collected(batch)
        batch = batch.detach()
        for group in exp.train_group_map:
            data = batch.exclude(*exp._get_excluded_keys(group)).to(exp.config.train_device)
            data = exp.algorithm.process_batch(group, data)
            if not exp.algorithm.has_rnn:  # as BenchMARL: recurrent models store sequences
                data = data.reshape(-1)
            exp.replay_buffers[group].extend(data)
            cfg, on = exp.config, exp.on_policy
            minibatches = -(-cfg.train_batch_size(on) // cfg.train_minibatch_size(on))  # 1 off-policy
            tds = [exp._optimizer_loop(group) for _ in range(cfg.n_optimizer_steps(on) * minibatches)]
            exp._on_train_end(torch.stack(tds), group)
        exp.collector.update_policy_weights_()

    return step


def alternate(variants: dict, device: torch.device, repeat: int, warmup: int) -> tuple[dict, dict]:
    """Median wall and CPU seconds per call of each variant, called in turn ``repeat`` times."""
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    wall: dict = {name: [] for name in variants}
    cpu: dict = {name: [] for name in variants}
    for _ in range(repeat):
        for name, fn in variants.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            w, c = time.perf_counter(), time.process_time()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall[name].append(time.perf_counter() - w)
            cpu[name].append(time.process_time() - c)
    return (
        {k: statistics.median(v) for k, v in wall.items()},
        {k: statistics.median(v) for k, v in cpu.items()},
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algorithms", nargs="+", default=["iql", "qmix", "mappo"])
    p.add_argument("--plugins", nargs="+", default=["per", "shep"])
    p.add_argument("--task", default="navigation")
    p.add_argument("--model", choices=["mlp", "slot", "shppo"], default="mlp",
                   help="every variant uses this model: slot for --plugins hetdps, shppo for --plugins shppo")  # fmt: skip
    p.add_argument("--interval", type=int, default=100, help="hetdps regrouping interval (iterations)")
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="runs/bench_benchmarl", help="folder of BenchMARL's runs")
    p.add_argument("--json", default=None, help="also write the JSON to this file")
    args = p.parse_args()
    logging.getLogger("torchrl").setLevel(logging.WARNING)  # keep stdout pure JSON
    if args.device == "cpu":
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    results = []
    for algorithm in args.algorithms:
        variants = {}
        for label in ["none", *args.plugins]:
            out = Path(args.out) / algorithm / label
            out.mkdir(parents=True, exist_ok=True)
            options = {"hetdps": {"interval": args.interval}} if label == "hetdps" else {}
            plugins = [] if label == "none" else [label]
            exp = experiment(algorithm, plugins, options, args.task, args.model, args.device, out)
            variants[label] = iteration(exp, iter(exp.collector))
        seconds, cpu = alternate(variants, torch.device(args.device), repeat=args.repeat, warmup=3)
        results.append(
            {
                "algorithm": algorithm,
                "task": f"vmas/{args.task}",
                "model": args.model,
                "device": args.device,
                "frames_per_iteration": 1000,
                "updates_per_iteration": 40,
                "seconds_per_iteration": seconds,
                "ratio_vs_none": {k: seconds[k] / seconds["none"] for k in args.plugins},
                "cpu_seconds_per_iteration": cpu,
                "cpu_ratio_vs_none": {k: cpu[k] / cpu["none"] for k in args.plugins},
            }
        )
    clock = "cpu" if args.device == "cpu" else "wall"
    summary = [
        {
            "measure": f"BenchMARL iteration, {row['algorithm']} + {plugin} vs plain ({row['task']}, "
            f"{row['model']}, {clock} time)",
            "value": ratio,
            "unit": "x",
            "target": None if TARGETS.get(plugin) is None else f"<= {TARGETS[plugin]}",
            "met": None if TARGETS.get(plugin) is None else ratio <= TARGETS[plugin],
            "note": f"wall clock: {row['ratio_vs_none'][plugin]:.3f}x" if clock == "cpu" else None,
        }
        for row in results
        for plugin, ratio in row[f"{'cpu_' if clock == 'cpu' else ''}ratio_vs_none"].items()
    ]
    payload = {
        "benchmark": "benchmarl_iteration",
        "device": args.device,
        "repeat": args.repeat,
        "rows": results,
        "summary": summary,
        "meta": machine(torch.device(args.device)),
    }
    print(json.dumps(payload, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
