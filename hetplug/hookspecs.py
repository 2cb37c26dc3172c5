"""The whole extension surface of hetplug: eight hooks, called by hosts, in this order.

A host (an adapter, or your own training loop) calls them through the plugin manager
returned by :func:`hetplug.get_plugin_manager`::

    configure (once) -> bind (once, when the host has built its models) -> per iteration:
      trajectories_collected -> replay_add -> replay_sample -> [host computes loss]
      -> update_priorities -> auxiliary_losses -> after_update

Every argument is a plain tensor or a small hetplug dataclass (:mod:`hetplug.types`).
A hookimpl may accept fewer arguments than its spec, so hooks grow by adding arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy
import torch

from hetplug.types import CollectedResult, HostObjects, HostSpec, SampleResult, TrajectoryBatch

hookspec = pluggy.HookspecMarker("hetplug")
#: Decorate a plugin's methods with this to implement the hooks below.
hookimpl = pluggy.HookimplMarker("hetplug")


@hookspec(historic=True)
def hetplug_configure(spec: HostSpec) -> None:
    """Once, before training: the host's sizes and device.

    Historic: call it as ``pm.hook.hetplug_configure.call_historic(kwargs={"spec": spec})``;
    a plugin registered later is then called with the same spec on registration.
    Plugins allocate their state (samplers, caches) here.
    """


@hookspec
def hetplug_bind(host: HostObjects) -> None:
    """Once, after configure, when the host has built its models: the host's own objects a
    plugin may act on (SHPPO's ``latent_net``, HetDPS's ``parameter_slots``, ...).

    Every plugin receives the same :class:`~hetplug.types.HostObjects`; a plugin that
    needs an object the host does not have raises ``ValueError`` naming it. This is how
    adapters hand plugins their models and optimisers: never by reaching into a plugin.
    """


@hookspec
def hetplug_trajectories_collected(batch: TrajectoryBatch) -> CollectedResult | None:
    """After the host collected ``B`` trajectories, before it stores or trains on them.

    Returns intrinsic rewards ``[B, T]`` (the host adds every plugin's to the reward)
    and extra relabelled trajectories (the host stores them after the originals).
    """


@hookspec(firstresult=True)
def hetplug_replay_add(batch: TrajectoryBatch) -> torch.Tensor | None:
    """The host is storing ``batch``; the prioritising plugin registers it.

    Returns ``[B]`` int64 slots: the host stores row ``b`` at slot ``indices[b]`` of a
    storage with ``spec.capacity`` slots (a ring that starts at 0). None when no
    prioritising plugin is active: the host stores and samples as usual.
    """


@hookspec(firstresult=True)
def hetplug_replay_sample(
    batch_size: int, generator: torch.Generator | None, td_fn: Callable[..., Any] | None
) -> SampleResult | None:
    """Draw ``batch_size`` slots; returns indices, IS weights and probabilities, or None.

    The host multiplies each sample's loss by ``weights`` before averaging.

    Args:
        batch_size: B.
        generator: for reproducible draws, or None.
        td_fn: None, unless the host supports experience sharing (``lbs``): then
            ``td_fn(sources [K], slots [K]) -> [N, K]`` returns every learner's TD error on
            agent ``sources[j]``'s transition at slot ``slots[j]``, and the result's fields
            are ``[N, B]`` with ``SampleResult.sources`` set.
    """


@hookspec(firstresult=True)
def hetplug_update_priorities(
    indices: torch.Tensor, td_error: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor | None:
    """After the host computed TD errors for sampled slots.

    Args:
        indices: ``[B]`` slots from ``hetplug_replay_sample`` (or ``replay_add``).
        td_error: ``[B, T]`` or ``[B, T, N]`` TD errors (signed or absolute).
        mask: ``[B, T]`` valid steps, or None when all are valid.

    Returns ``[B]`` the new trajectory priorities (for logging), or None.
    """


@hookspec
def hetplug_auxiliary_losses(batch: TrajectoryBatch, update: int) -> dict[str, Any] | None:
    """After the host's own update on ``batch``: plugins train their auxiliary losses.

    Plugins with their own optimiser step it here. Returns named values for the host's
    logger (detached tensors or floats).
    """


@hookspec
def hetplug_after_update(update: int) -> dict[str, Any] | None:
    """After the host's ``update``-th optimiser update: periodic work such as regrouping.

    Returns named values for logging (tensors, floats, or small hetplug dataclasses).
    """
