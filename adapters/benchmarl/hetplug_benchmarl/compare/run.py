"""One run of ``hetplug compare``: one BenchMARL experiment, its result as BenchMARL's json.

:func:`run_one` builds the experiment for a :class:`RunSpec`, trains it, and returns the
json dict BenchMARL's ``create_json`` wrote (the marl-eval layout
``{environment: {task: {algorithm: {seed_N: {step_K: {...}}}}}}``), with the algorithm
renamed to the variant (``iql+shep``) so variants never collide when their files are merged.
It needs no Ray: the engine calls it in a worker, a script can call it directly.

Example:
    >>> from hetplug_benchmarl.compare.spec import make_grid, Settings
    >>> run = make_grid("vmas/navigation", "iql", ["shep"], seeds=1, settings=Settings(frames=2000)).runs()[0]
    >>> result = run_one(run, folder="runs/one")      # runs/one/<experiment>/<experiment>.json
    >>> result["json"]["vmas"]["navigation"]["iql+shep"]["seed_0"]["step_2"]["return"]
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from hetplug_benchmarl.compare.spec import RunSpec, SpecError, closest


def hetplug_callback(plugins: list[str], options: dict[str, dict]):
    """The adapter's callback for ``plugins`` with ``{plugin: {option: value}}`` (hetplug's
    configuration language), or None for the unmodified algorithm."""
    if not plugins:
        return None
    from hetplug_benchmarl.callback import HetplugCallback

    return HetplugCallback({"plugins": list(plugins), **options})


def check(run: RunSpec) -> None:
    """Validate the run's plugin options the way the run will (by building its callback).

    Raises:
        SpecError: one line, with the closest option name where one is close.
    """
    import re

    try:
        hetplug_callback(list(run.variant.plugins), {k: dict(v) for k, v in run.options.items()})
    except (ValueError, TypeError) as err:
        message = str(err).splitlines()[0]
        found = re.match(r"unknown option (\w+)\.(\w+); \w+ accepts: (.*)", message)
        hint = closest(found.group(2), found.group(3).split(", ")) if found else ""
        raise SpecError(f"--set: {message}{hint}") from None


def experiment_config(run: RunSpec, folder: str | Path):
    """BenchMARL's ``ExperimentConfig`` for the run: the demo's sizes, json output and an
    evaluation every ``eval_every`` iterations, no other logger, no checkpoints."""
    from benchmarl.experiment import ExperimentConfig

    s = run.settings
    cfg = ExperimentConfig.get_from_yaml()
    cfg.render = False  # torchvision's CUDA build does not import on CPU machines (FACTS.md)
    cfg.loggers = []
    cfg.create_json = True
    cfg.evaluation = True
    cfg.evaluation_interval = s.frames_per_batch * s.eval_every
    cfg.evaluation_episodes = s.eval_episodes
    cfg.checkpoint_interval = 0
    cfg.checkpoint_at_end = False
    cfg.save_folder = str(folder)
    cfg.sampling_device = cfg.train_device = cfg.buffer_device = s.device
    cfg.max_n_frames = s.frames
    cfg.off_policy_collected_frames_per_batch = cfg.on_policy_collected_frames_per_batch = s.frames_per_batch
    cfg.off_policy_n_envs_per_worker = cfg.on_policy_n_envs_per_worker = s.envs
    cfg.off_policy_n_optimizer_steps = s.updates
    cfg.off_policy_train_batch_size = 256
    cfg.off_policy_memory_size = s.memory
    cfg.on_policy_minibatch_size = min(200, s.frames_per_batch)
    cfg.on_policy_n_minibatch_iters = max(1, s.updates * cfg.on_policy_minibatch_size // s.frames_per_batch)
    for name, value in run.experiment.items():  # --set experiment.FIELD=VALUE (checked by the grid)
        setattr(cfg, name, value)
    return cfg


def model_config(model: str, feature_dims: int = 1):
    """``mlp`` (BenchMARL's), ``slot`` (HetDPS's per-agent slots, same widths) or ``shppo``.
    ``feature_dims``: the observation's trailing dims the MLP flattens (3 for ``[13, 13, 5]``
    views; the grid lets only ``mlp`` take more than 1)."""
    from benchmarl.models.mlp import MlpConfig

    mlp = MlpConfig.get_from_yaml()
    mlp.num_feature_dims = feature_dims
    if model == "slot":
        from hetplug_benchmarl.models import SlotModelConfig

        return SlotModelConfig(num_cells=list(mlp.num_cells), activation_class=mlp.activation_class)
    if model == "shppo":
        from hetplug_benchmarl.models import SHPPOModelConfig

        return SHPPOModelConfig()  # Table IV sizes
    return mlp


def build_experiment(run: RunSpec, folder: str | Path):
    """The BenchMARL ``Experiment`` of ``run``, saving under ``folder``."""
    from benchmarl.experiment import Experiment
    from benchmarl.models.mlp import MlpConfig

    from hetplug_benchmarl.compare.spec import algorithms
    from hetplug_benchmarl.compare.tasks import feature_dims, load_task

    callback = hetplug_callback(list(run.variant.plugins), {k: dict(v) for k, v in run.options.items()})
    experiment = Experiment(
        task=load_task(run.task),
        algorithm_config=algorithms()[run.variant.algorithm].get_from_yaml(),
        model_config=model_config(run.model, feature_dims(run.task)),
        critic_model_config=MlpConfig.get_from_yaml(),
        seed=run.seed,
        config=experiment_config(run, folder),
        callbacks=[callback] if callback is not None else [],
    )
    _rename_json_algorithm(experiment, run.variant.name)
    return experiment


def _rename_json_algorithm(experiment, name: str) -> None:
    """BenchMARL's JsonWriter keys results by the algorithm class (``iql`` for every variant):
    key them by the variant instead. The writer keeps one nested dict and rewrites the file at
    each evaluation, so moving the entry before ``run()`` renames every write."""
    writer = experiment.logger.json_writer
    tasks = writer.data[experiment.environment_name][experiment.task_name]
    tasks[name] = tasks.pop(experiment.algorithm_name)


def run_one(run: RunSpec, folder: str | Path | None = None, outputs=None) -> dict[str, Any]:
    """Train ``run`` and return ``{"json": BenchMARL's json dict, "seconds": training time}``.

    Args:
        run: the run.
        folder: where BenchMARL writes its experiment folder (json included); default a
            temporary folder removed afterwards (a Ray worker sends the dict back instead).
        outputs: optional ``outputs(experiment, callback) -> dict`` called after training
            (``callback`` is hetplug's, or None); its result is returned as ``"outputs"``.
    """
    import torch

    from hetplug_benchmarl.callback import HetplugCallback

    if run.settings.device == "cpu":
        torch.set_num_threads(1)  # many runs share the machine's cores (FACTS.md: threads)
    quiet, os.environ["TQDM_DISABLE"] = (
        os.environ.get("TQDM_DISABLE"),
        "1",
    )  # the driver prints one line per run
    try:
        with tempfile.TemporaryDirectory(prefix="hetplug-compare-") as tmp:
            folder = Path(folder if folder is not None else tmp)
            folder.mkdir(parents=True, exist_ok=True)
            experiment = build_experiment(run, folder)
            start = time.perf_counter()
            experiment.run()
            seconds = time.perf_counter() - start
            data = json.loads(Path(experiment.logger.json_writer.path).read_text())
            result: dict[str, Any] = {"json": data, "seconds": seconds}
            if outputs is not None:
                callback = next((c for c in experiment.callbacks if isinstance(c, HetplugCallback)), None)
                result["outputs"] = outputs(experiment, callback)
    finally:
        if quiet is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = quiet
    return result
