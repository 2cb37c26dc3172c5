"""hetplug inside BenchMARL 1.5.2 (TorchRL 0.11): a callback and ``wrap()``.

    experiment = Experiment(task=..., algorithm_config=..., model_config=..., seed=0, config=cfg)
    hetplug_benchmarl.wrap(experiment, {"plugins": ["shep"], "shep": {"grid_shape": [8, 8]}})
    experiment.run()

or ``Experiment(..., callbacks=[HetplugCallback(["shep"])])``, or the Hydra entry
``python -m hetplug_benchmarl.run ... hetplug=shep``. All three take hetplug's one
configuration language (docs/configuration.md).
"""

from __future__ import annotations

from typing import Any

import torch

from hetplug_benchmarl.algorithms import Happo, HappoConfig
from hetplug_benchmarl.callback import HetplugCallback
from hetplug_benchmarl.losses import WEIGHTED_LOSSES, Weighting, register_weighted_loss
from hetplug_benchmarl.models import SHPPOModel, SHPPOModelConfig, SlotModel, SlotModelConfig
from hetplug_benchmarl.transfer import copy_policy, evaluate, evaluate_team_sizes

__all__ = [
    "WEIGHTED_LOSSES",
    "Happo",
    "HappoConfig",
    "HetplugCallback",
    "SHPPOModel",
    "SHPPOModelConfig",
    "SlotModel",
    "SlotModelConfig",
    "Weighting",
    "copy_policy",
    "evaluate",
    "evaluate_team_sizes",
    "register_weighted_loss",
    "wrap",
]


def wrap(experiment, config: Any = (), **top_level: Any) -> HetplugCallback:
    """Add hetplug to an already built ``Experiment`` (before ``run()``).

    Args:
        experiment: a ``benchmarl.experiment.Experiment``.
        config: hetplug's configuration: plugin names, e.g. ``["shep"]``, or the full
            mapping ``{"plugins": [...], "shep": {...}, "positions": {...}}``.
        **top_level: top-level keys of the same mapping as keyword arguments, e.g.
            ``wrap(exp, ["shep"], shep={"grid_shape": [8, 8]}, replay_window=2)``.

    Returns the callback (its ``metrics(group)``, ``priorities(group)``, ``log`` and
    ``plugin_manager(group)`` are there for inspection). Everything is checked here,
    before any training; on an error the experiment is left as it was.
    """
    if experiment.n_iters_performed and not experiment.config.restore_file:
        raise ValueError("wrap() must be called before experiment.run(): the experiment already trained")
    callback = HetplugCallback(config, **top_level)
    callback.experiment = experiment
    callback.on_setup()
    experiment.callbacks.append(callback)
    if experiment.config.restore_file is not None:
        # The experiment restored itself before hetplug existed (and before its buffers
        # were replaced): restore again, now with the hetplug buffers and plugin state.
        experiment.load_state_dict(torch.load(experiment.config.restore_file, weights_only=False))
    return callback
