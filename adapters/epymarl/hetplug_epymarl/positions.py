"""Positions in EPyMARL from slices: its episode batch has no positions (FACTS.md), so
they are read from the environment object by a named extractor
(:mod:`hetplug_epymarl.env_fields`), or are slices of each agent's observation or of the
global state, described by :class:`hetplug.PositionSource` (the ``positions`` and
``opponents`` keys of the configuration). This module reads the slices.

* ``key: obs``: ``obs[..., start:stop]`` of every agent, one entity per agent
  (``[B, T, N, stop - start]``); for opponents, one agent's (``agent``) view of them,
  split into entities of ``dim`` coordinates.
* ``key: state``: ``state[..., start:stop]``, split into entities of ``dim`` coordinates
  (2 by default): for positions, ``n_agents x dim`` features.
"""

from __future__ import annotations

import torch

from hetplug import PositionSource
from hetplug_epymarl.episodes import width


def check_source(source: PositionSource, name: str, scheme: dict, n_agents: int, per_agent: bool) -> None:
    """Raise unless ``source`` fits the environment's obs/state vectors (``name``: the key)."""
    size = width(scheme, source.key)
    if source.slice[1] > size:
        raise ValueError(
            f"hetplug.{name}.slice={list(source.slice)!r} is out of range: {source.key} has {size} features"
        )
    if source.key == "state" and per_agent and source.width != n_agents * source.entity_dim:
        raise ValueError(
            f"hetplug.{name}.slice={list(source.slice)!r} must hold n_agents x dim = {n_agents} x "
            f"{source.entity_dim} state features for key 'state'"
        )
    if source.key == "obs" and not per_agent and source.agent >= n_agents:
        raise ValueError(
            f"hetplug.{name}.agent={source.agent} is out of range: the task has {n_agents} agents"
        )


def read_positions(ep_batch, source: PositionSource, per_agent: bool) -> torch.Tensor:
    """``[B, T, N or K, D]`` positions from an obs or state slice."""
    start, stop = source.slice
    if source.key == "obs":
        value = ep_batch["obs"][..., start:stop]  # [B, T, N, w]
        if not per_agent:
            value = value[:, :, source.agent]  # [B, T, w]: one agent's view of the opponents
    else:
        value = ep_batch["state"][..., start:stop]  # [B, T, w]
    if value.dim() == 3:
        value = value.reshape(*value.shape[:2], -1, source.entity_dim)
    return value.float()
