"""hetplug inside BenchMARL 1.5.2 (TorchRL 0.11): a callback and ``wrap()``.

    experiment = Experiment(task=..., algorithm_config=..., model_config=..., seed=0, config=cfg)
    hetplug_benchmarl.wrap(experiment, plugins=["shep"], shep={"grid_shape": (8, 8)})
    experiment.run()

or ``Experiment(..., callbacks=[HetplugCallback(["shep"], {"shep": {...}})])``.
"""

from __future__ import annotations

from typing import Any

import torch

from hetplug_benchmarl.callback import HetplugCallback
from hetplug_benchmarl.models import SHPPOModel, SHPPOModelConfig, SlotMlp, SlotMlpConfig, copy_policy
from hetplug_benchmarl.options import AdapterOptions, OpponentSource, PositionSource

__all__ = [
    "AdapterOptions",
    "HetplugCallback",
    "OpponentSource",
    "PositionSource",
    "SHPPOModel",
    "SHPPOModelConfig",
    "SlotMlp",
    "SlotMlpConfig",
    "copy_policy",
    "wrap",
]


def wrap(
    experiment,
    plugins: list[str] | tuple[str, ...],
    *,
    positions: dict[str, Any] | None = None,
    opponents: dict[str, Any] | None = None,
    replay_window: int = 1,
    **options: dict[str, Any],
) -> HetplugCallback:
    """Add hetplug to an already built ``Experiment`` (before ``run()``).

    Args:
        experiment: a ``benchmarl.experiment.Experiment``.
        plugins: plugin names, e.g. ``["shep"]``.
        positions: where agent positions are read (default: observation[..., 0:2]).
        opponents: ``{"group": ..., "key": ..., "slice": [...]}`` or None.
        replay_window: on-policy (MAPPO, IPPO): rollouts the prioritised buffer keeps (1: the
            current rollout only).
        **options: per-plugin options by plugin name, e.g. ``shep={"grid_shape": (8, 8)}``.

    Returns the callback (its ``priorities(group)`` and ``plugin_manager(group)`` are there
    for inspection). Everything is checked here, before any training.
    """
    if experiment.n_iters_performed and not experiment.config.restore_file:
        raise ValueError("wrap() must be called before experiment.run(): the experiment already trained")
    callback = HetplugCallback(
        plugins, options, positions=positions, opponents=opponents, replay_window=replay_window
    )
    callback.experiment = experiment
    callback.on_setup()
    experiment.callbacks.append(callback)
    if experiment.config.restore_file is not None:
        # The experiment restored itself before hetplug existed (and before its buffers
        # were replaced): restore again, now with the hetplug buffers and plugin state.
        experiment.load_state_dict(torch.load(experiment.config.restore_file, weights_only=False))
    return callback
