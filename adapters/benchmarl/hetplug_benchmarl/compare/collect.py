"""``hetplug compare --collect DIR``: the runs of a BenchMARL/Hydra multirun folder.

Every ``*.json`` under DIR in BenchMARL's ``create_json`` layout is read on its own (the
same files ``benchmarl.eval_results.get_raw_dict_from_multirun_folder`` merges; other json
files such as a summary are skipped). A Hydra job of ``python -m hetplug_benchmarl.run``
writes the algorithm's plain name (``iql``) whatever its ``hetplug`` group, so the plugins
are read from the job's ``.hydra/config.yaml`` and appended (``iql+shep``); merging the
files instead would let those variants overwrite each other. Works the same for a SLURM
run through Hydra's submitit launcher, or ``hetplug compare``'s own ``OUT/runs``.

Runs that stopped early (fewer frames than the longest run of the task) are left out and
reported.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from hetplug_benchmarl.compare.metric import RunRecord, is_benchmarl_json, records_from_json


def hydra_plugins(json_file: Path, root: Path) -> list[str]:
    """The ``hetplug.plugins`` of the Hydra job that wrote ``json_file`` ([] if none)."""
    for folder in json_file.parents:
        config = folder / ".hydra" / "config.yaml"
        if config.exists():
            cfg = yaml.safe_load(config.read_text()) or {}
            return list((cfg.get("hetplug") or {}).get("plugins") or [])
        if folder == root:
            break
    return []


def collect(
    folder: str | Path, key: str = "return", task: str | None = None
) -> tuple[list[RunRecord], list[str]]:
    """The finished runs under ``folder`` and notes on what was left out.

    Args:
        folder: a multirun folder (searched recursively).
        key: the json metric.
        task: keep only this ``environment/task`` (needed when the folder holds several).

    Raises:
        ValueError: no run found, or several tasks without ``task``.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"--collect {folder}: not a folder")
    records: list[RunRecord] = []
    for path in sorted(root.rglob("*.json")):
        if "wandb" in path.name:  # as BenchMARL's loader
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not is_benchmarl_json(data):
            continue
        plugins = hydra_plugins(path, root)
        for r in records_from_json(data, key, source=str(path)):
            if plugins and "+" not in r.algorithm:
                r = RunRecord(
                    r.environment, r.task, "+".join([r.algorithm, *plugins]), r.seed, r.curve, r.source
                )
            records.append(r)
    tasks = sorted({f"{r.environment}/{r.task}" for r in records})
    if task is not None:
        records = [r for r in records if f"{r.environment}/{r.task}" == task]
    elif len(tasks) > 1:
        raise ValueError(
            f"--collect {folder}: runs of several tasks ({', '.join(tasks)}); pick one with --task"
        )
    if not records:
        found = f" of task {task} (found: {', '.join(tasks) or 'none'})" if task else ""
        raise ValueError(f"--collect {folder}: no BenchMARL json run{found} (create_json=True writes them)")
    end = max(r.curve.frames[-1] for r in records)
    short = [r for r in records if r.curve.frames[-1] < end]
    notes = [f"left out {r.algorithm} seed {r.seed}: unfinished ({r.curve.frames[-1]} of {end} frames, {r.source})"
             for r in short]  # fmt: skip
    return [r for r in records if r.curve.frames[-1] == end], notes
