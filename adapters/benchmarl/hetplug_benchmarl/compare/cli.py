"""``hetplug compare``: variants x seeds of BenchMARL runs on Ray, summarised with rliable.

    hetplug compare --task vmas/navigation --algorithm iql --plugins none shep --seeds 5 \\
        --frames 60000 --workers 2 --out results/nav-iql
    hetplug compare ... --set shep.group_her=true --set shep.grid_shape=[16,16]
    hetplug compare --algorithm happo --plugins none shppo --model mlp shppo    # a model per variant
    hetplug compare ... --address ray://head:10001 --device cuda --gpus-per-run 0.25
    hetplug compare --collect multirun/2026-12-01/10-22-21      # a BenchMARL/Hydra multirun

Each variant is one token of --plugins: ``none`` (the unmodified algorithm), a plugin, or
plugins joined by ``+``. The first variant is the reference of P(improvement). Results go
to --out: ``runs/<variant>/seed_<N>.json`` (BenchMARL's json), ``summary.json``,
``aggregate.png`` and ``curves.png``. A rerun skips the runs already in --out, so an
interrupted grid finishes with the same command. See docs/compare.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hetplug_benchmarl.compare import stats
from hetplug_benchmarl.compare.engine import Engine, EngineError
from hetplug_benchmarl.compare.metric import Metric
from hetplug_benchmarl.compare.spec import MODELS, Settings, SpecError

PROG = "hetplug compare"


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str):
        print(f"{PROG}: error: {message} (see {PROG} --help)", file=sys.stderr)
        raise SystemExit(2)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = Settings()
    g = p.add_argument_group("the grid")
    g.add_argument("--task", help="family/task, e.g. vmas/navigation (default vmas/navigation)")
    g.add_argument("--algorithm", default="iql", help="BenchMARL algorithm: iql, vdn, qmix, masac, isac, maddpg, "
                   "iddpg, mappo, ippo (default iql)")  # fmt: skip
    g.add_argument("--plugins", nargs="+", default=["none", "shep"], metavar="VARIANT",
                   help="one token per variant: none, a plugin, or plugins joined by + (default: none shep)")  # fmt: skip
    g.add_argument("--seeds", type=int, default=5, help="runs per variant, seeds 0..N-1 (default 5)")
    g.add_argument("--set", dest="sets", action="append", default=[], metavar="PLUGIN.OPTION=VALUE",
                   help="a plugin option, value in YAML (repeatable), e.g. shep.group_her=false; experiment.FIELD=VALUE: a BenchMARL ExperimentConfig field for every variant (experiment.lr=5e-4)")  # fmt: skip
    g.add_argument("--model", nargs="+", default=["auto"], choices=["auto", *MODELS], metavar="MODEL",
                   help="policy model (auto, mlp, slot, shppo) of every variant, or one per variant "
                   "(--plugins none shppo --model mlp shppo); auto: the one a plugin needs (hetdps: slot, "
                   "shppo: shppo)")  # fmt: skip
    e = p.add_argument_group("each run")
    e.add_argument(
        "--frames", type=int, default=d.frames, help=f"environment frames per run (default {d.frames})"
    )
    e.add_argument("--frames-per-batch", type=int, default=d.frames_per_batch, help="frames per iteration")
    e.add_argument("--envs", type=int, default=d.envs, help="vectorised environments")
    e.add_argument("--updates", type=int, default=d.updates, help="optimiser steps per iteration")
    e.add_argument("--memory", type=int, default=d.memory,
                   help=f"off-policy replay memory in frames (default {d.memory}; large observations need less)")  # fmt: skip
    e.add_argument("--eval-episodes", type=int, default=d.eval_episodes, help="episodes per evaluation")
    e.add_argument("--eval-every", type=int, default=d.eval_every, help="iterations between evaluations")
    e.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where each run trains")
    r = p.add_argument_group("engine (Ray)")
    r.add_argument(
        "--workers", type=int, default=2, help="runs at the same time; a local Ray gets this many CPUs"
    )
    r.add_argument("--address", help="join this Ray cluster (host:port, ray://host:port, auto) instead")
    r.add_argument("--gpus-per-run", type=float, default=0.25, help="GPU fraction per run with --device cuda")
    s = p.add_argument_group("statistics")
    s.add_argument("--metric", default="return", help="json metric to score (default return: episode reward)")
    s.add_argument("--last-fraction", type=float, default=0.25, help="final share of training scored (0.25)")
    s.add_argument(
        "--reps", type=int, default=stats.REPS, help=f"bootstrap replications (default {stats.REPS})"
    )
    s.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap's RandomState")
    p.add_argument("--out", help="results folder (default results/compare; with --collect: DIR)")
    p.add_argument("--collect", metavar="DIR", help="summarise the BenchMARL json files of a multirun folder")
    return p


def _fail(message: str, status: int = 2) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as stop:  # --help (0) or a one-line usage error (2)
        return int(stop.code or 0)
    try:
        metric = Metric(args.metric, args.last_fraction)
        if args.reps < 1:
            raise ValueError(f"--reps must be >= 1, got {args.reps}")
        _need("rliable", "the statistics")
    except (ValueError, EngineError) as err:
        return _fail(str(err))
    if args.collect is not None:
        return _collect(args, metric)
    try:
        _need("benchmarl", "the runs")
    except EngineError as err:
        return _fail(str(err))
    return _compare(args, metric)


def _need(module: str, what: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise EngineError(f'{what} need {module}: pip install -c constraints.txt "hetplug[compare]"')


def _finish(summary: dict, out: Path) -> None:
    from hetplug_benchmarl.compare.summary import describe, write_summary

    paths = write_summary(summary, out)
    print("\n".join(["", *describe(summary), f"written: {', '.join(str(p) for p in paths)}"]))


def _collect(args: argparse.Namespace, metric: Metric) -> int:
    from hetplug_benchmarl.compare.collect import collect
    from hetplug_benchmarl.compare.summary import build_summary

    try:
        records, notes = collect(args.collect, metric.key, task=args.task)
        engine = {"name": "collect", "address": None, "workers": None, "folder": str(args.collect)}
        summary = build_summary(records, metric, engine=engine, reps=args.reps, seed=args.bootstrap_seed)
    except ValueError as err:
        return _fail(str(err).splitlines()[0])
    for note in notes:
        print(note)
    print(f"collected {len(records)} runs of {summary['task']} from {args.collect}")
    _finish(summary, Path(args.out or args.collect))
    return 0


def _compare(args: argparse.Namespace, metric: Metric) -> int:
    from hetplug_benchmarl.compare import engine as ray_engine
    from hetplug_benchmarl.compare import run as one
    from hetplug_benchmarl.compare import store
    from hetplug_benchmarl.compare.spec import make_grid
    from hetplug_benchmarl.compare.summary import build_summary

    out = Path(args.out or "results/compare")
    try:
        settings = Settings(frames=args.frames, frames_per_batch=args.frames_per_batch, envs=args.envs,
                            updates=args.updates, memory=args.memory, eval_episodes=args.eval_episodes, eval_every=args.eval_every,
                            device=args.device)  # fmt: skip
        grid = make_grid(args.task or "vmas/navigation", args.algorithm, args.plugins, seeds=args.seeds,
                         sets=args.sets, model=args.model, settings=settings)  # fmt: skip
        runs = grid.runs()
        for run in {r.variant: r for r in runs}.values():
            one.check(run)
        store.check_configs(out, runs)
        if args.device == "cuda" and not args.gpus_per_run > 0:
            raise EngineError(f"--device cuda needs --gpus-per-run > 0, got {args.gpus_per_run}")
        engine = Engine(workers=args.workers, address=args.address,
                        gpus_per_run=args.gpus_per_run if args.device == "cuda" else 0.0)  # fmt: skip
    except (SpecError, EngineError) as err:
        return _fail(str(err))
    todo = [r for r in runs if not store.is_finished(out, r)]
    print(f"{len(grid.variants)} variants x {len(grid.seeds)} seeds = {len(runs)} runs of {grid.task} "
          f"({grid.model} model, {settings.frames} frames each): {len(runs) - len(todo)} already in {out}, "
          f"{len(todo)} to run")  # fmt: skip
    failed: dict[str, str] = {}
    if todo:
        try:
            started = ray_engine.connect(engine, need_gpu=args.device == "cuda")
        except EngineError as err:
            return _fail(str(err))
        by_label = {r.label: r for r in todo}
        records_key = metric.key

        def on_result(label: str, result: dict) -> str:
            run = by_label[label]
            store.write_result(out, run, result["json"])
            records = store.load_records(out, [run], records_key)
            return (
                f"score {metric.score(records[0].curve):+.4f}"
                if records
                else f"no {records_key!r} in its json"
            )

        def on_error(label: str, text: str, final: bool) -> None:
            store.write_error(out, by_label[label], text)

        try:
            report = ray_engine.run_tasks(
                one.run_one, by_label, engine, on_result=on_result, on_error=on_error
            )
        except KeyboardInterrupt:
            print(f"\ninterrupted: the finished runs are in {out}/runs; the same command finishes the grid",
                  file=sys.stderr)  # fmt: skip
            return 130
        finally:
            ray_engine.shutdown(started)
        failed = report.failed
    records = store.load_records(out, runs, metric.key)
    summary = build_summary(records, metric, engine=engine.info(), order=[v.name for v in grid.variants],
                            failed=failed, reps=args.reps, seed=args.bootstrap_seed)  # fmt: skip
    summary["frames"] = settings.frames
    summary["models"] = {v.name: grid.model_of(v) for v in grid.variants}
    _finish(summary, out)
    if failed:
        print(f"{len(failed)} run(s) failed (tracebacks: {out}/runs/<variant>/seed_<N>.error); "
              "the same command runs them again", file=sys.stderr)  # fmt: skip
        return 1
    return 0
