"""Where a grid's results live, and what makes it resumable.

    OUT/runs/<variant>/seed_<N>.json     one finished run, BenchMARL's json (variant-named)
    OUT/runs/<variant>/config.yaml       what the variant's runs were trained with
    OUT/runs/<variant>/seed_<N>.error    the traceback of a run that failed (until it succeeds)
    OUT/runs/<variant>/seed_<N>.outputs  what a caller kept of the run besides its json (the demo's
                                         plugin metrics), json text under another suffix

A run file is written whole (temporary file, then rename) only when its run has
finished, so a file found on a rerun is a finished run and is skipped; an interrupted
grid finishes with the same command. ``OUT/runs`` holds nothing but BenchMARL jsons and the
configs (not json), so ``benchmarl.eval_results.get_raw_dict_from_multirun_folder("OUT/runs")`` merges
every run without collisions (each variant has its own algorithm name).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from hetplug_benchmarl.compare.metric import RunRecord, is_benchmarl_json, records_from_json
from hetplug_benchmarl.compare.spec import RunSpec, SpecError

CONFIG = "config.yaml"  # not .json: BenchMARL's multirun loader merges every .json file


def run_path(out: str | Path, run: RunSpec) -> Path:
    return Path(out) / "runs" / run.variant.name / f"seed_{run.seed}.json"


def error_path(out: str | Path, run: RunSpec) -> Path:
    return run_path(out, run).with_suffix(".error")


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # a reader (or a rerun) sees the old file or the whole new one


def check_configs(out: str | Path, runs: Iterable[RunSpec]) -> None:
    """Refuse to mix runs of different settings in one ``out``.

    Raises:
        SpecError: a variant's folder holds runs trained with other settings.
    """
    for run in {r.variant.name: r for r in runs}.values():
        path = run_path(out, run).parent / CONFIG
        if not path.exists():
            continue
        old, new = yaml.safe_load(path.read_text()), run.config()
        diff = next((k for k in _flat(new) if _flat(old).get(k) != _flat(new)[k]), None)
        if diff is not None:
            raise SpecError(
                f"{path.parent} holds runs with {diff}={_flat(old).get(diff)!r}, this grid has "
                f"{diff}={_flat(new)[diff]!r}: use another --out (or remove that folder)"
            )


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _records(out: str | Path, run: RunSpec, key: str = "return") -> list[RunRecord]:
    """The run's records from its file ([] when the file is missing, unreadable or another run's)."""
    path = run_path(out, run)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not is_benchmarl_json(data):
        return []
    found = records_from_json(data, key, source=str(path))
    return [r for r in found if r.algorithm == run.variant.name and r.seed == run.seed]


def is_finished(out: str | Path, run: RunSpec) -> bool:
    """A readable run file holding this variant and seed."""
    return bool(_records(out, run))


def write_result(out: str | Path, run: RunSpec, data: dict[str, Any]) -> Path:
    """Store a finished run's json (and the variant's config, the first time)."""
    path = run_path(out, run)
    config = path.parent / CONFIG
    if not config.exists():
        _write_atomic(config, yaml.safe_dump(run.config(), sort_keys=False))
    _write_atomic(path, json.dumps(data, indent=4))
    error_path(out, run).unlink(missing_ok=True)
    return path


def outputs_path(out: str | Path, run: RunSpec) -> Path:
    return run_path(out, run).with_suffix(".outputs")


def write_outputs(out: str | Path, run: RunSpec, outputs: dict[str, Any]) -> Path:
    """Keep a run's extra outputs (json text, not a .json file: see the module docstring)."""
    path = outputs_path(out, run)
    _write_atomic(path, json.dumps(outputs))
    return path


def read_outputs(out: str | Path, run: RunSpec) -> dict[str, Any] | None:
    path = outputs_path(out, run)
    return json.loads(path.read_text()) if path.exists() else None


def write_error(out: str | Path, run: RunSpec, text: str) -> Path:
    path = error_path(out, run)
    _write_atomic(path, text)
    return path


def load_records(out: str | Path, runs: Sequence[RunSpec], key: str = "return") -> list[RunRecord]:
    """The records of the finished runs among ``runs`` (other files in ``out`` are ignored)."""
    return [record for run in runs for record in _records(out, run, key)]
