"""The ``hetplug`` key of an EPyMARL algorithm config, parsed and checked.

Two forms are accepted::

    hetplug: [per]                                   # plugin names, default options
    hetplug:                                         # a mapping with settings
      plugins: [shep]
      shep: {positions: {source: obs, slice: [9, 11]}, grid_shape: [8, 8],
             grid_low: [0, 0], grid_high: [7, 7]}

``latent_dim`` and ``decoder_hidden`` inside ``shppo`` size the SHPPO agent (3 and 64).
``positions`` and ``opponents`` inside ``shep`` tell the adapter where SHEP's agent
positions are in EPyMARL's batch (it has no positions of its own, FACTS.md): a
``[start, stop]`` slice of every agent's observation (``source: obs``) or of the global
state (``source: state``, ``stop - start`` = agents x ``dim``). Everything else under a
plugin's name goes to that plugin's config. Every error names the key and the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import hetplug

#: the plugins that own the replay (the buffer stores and samples through them)
PRIORITISERS = ("per", "shep", "lbs")
#: options under ``shppo`` that size the SHPPO agent (the rest configure the plugin)
SHPPO_AGENT_OPTIONS = ("latent_dim", "decoder_hidden")


@dataclass(frozen=True)
class SliceSource:
    """Where ``[B, T, N, dim]`` positions are read in an EPyMARL ``EpisodeBatch``.

    Attributes:
        source: ``"obs"`` (each agent's own observation) or ``"state"``.
        slice: ``[start, stop]`` of the observation or state vector.
        dim: coordinates per entity (2 for a grid); used to split a state slice, or an
            observation slice holding several opponents, into entities.
        agent: for opponents read from observations, whose observation to read.
    """

    source: str = "obs"
    slice: tuple[int, int] = (0, 2)
    dim: int = 2
    agent: int = 0

    @classmethod
    def parse(cls, value: Any, where: str) -> SliceSource:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where} must be a mapping like {{source: obs, slice: [0, 2]}}, got {value!r}")
        unknown = sorted(set(value) - {"source", "slice", "dim", "agent"})
        if unknown:
            raise ValueError(f"unknown key {where}.{unknown[0]}; accepted: agent, dim, slice, source")
        source = value.get("source", "obs")
        if source not in ("obs", "state"):
            raise ValueError(f"{where}.source must be 'obs' or 'state', got {where}.source={source!r}")
        sl = value.get("slice", [0, 2])
        if (
            not isinstance(sl, (list, tuple))
            or len(sl) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in sl)
            or not 0 <= sl[0] < sl[1]
        ):
            raise ValueError(
                f"{where}.slice must be [start, stop] with 0 <= start < stop, got {where}.slice={sl!r}"
            )
        dim = value.get("dim", 2)
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1 or (sl[1] - sl[0]) % dim:
            raise ValueError(
                f"{where}.dim must be an integer >= 1 dividing the slice width {sl[1] - sl[0]}, got {where}.dim={dim!r}"
            )
        agent = value.get("agent", 0)
        if not isinstance(agent, int) or isinstance(agent, bool) or agent < 0:
            raise ValueError(f"{where}.agent must be an integer >= 0, got {where}.agent={agent!r}")
        return cls(source=source, slice=(int(sl[0]), int(sl[1])), dim=int(dim), agent=int(agent))

    def check(self, obs_width: int, state_width: int, n_agents: int, where: str, per_agent: bool) -> None:
        """Fail when the slice does not fit the environment's obs/state vectors."""
        width = obs_width if self.source == "obs" else state_width
        if self.slice[1] > width:
            raise ValueError(
                f"{where}.slice={list(self.slice)!r} is out of range: {self.source} has {width} features"
            )
        if self.source == "state" and per_agent and (self.slice[1] - self.slice[0]) != n_agents * self.dim:
            raise ValueError(
                f"{where}.slice={list(self.slice)!r} must hold n_agents x dim = {n_agents} x {self.dim} "
                f"state features for source 'state'"
            )
        if self.source == "obs" and not per_agent and self.agent >= n_agents:
            raise ValueError(f"{where}.agent={self.agent} is out of range: the task has {n_agents} agents")


@dataclass(frozen=True)
class Settings:
    """The parsed ``hetplug`` key."""

    plugins: tuple[str, ...]
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    positions: SliceSource = field(default_factory=SliceSource)
    opponents: SliceSource | None = None
    shppo_agent: dict[str, int] = field(default_factory=dict)

    @property
    def prioritiser(self) -> str | None:
        return next((p for p in self.plugins if p in PRIORITISERS), None)


def parse_settings(value: Any) -> Settings | None:
    """``args.hetplug`` -> :class:`Settings`, or None when the key is absent or empty.

    The plugins and their options are validated by building a plugin manager once, so a
    wrong name, option or type fails here, before the environment or learner exist.
    """
    if value is None or value == [] or value == {}:
        return None
    if isinstance(value, str):
        value = [value]
    if isinstance(value, (list, tuple)):
        value = {"plugins": list(value)}
    if not isinstance(value, Mapping):
        raise ValueError(
            f"hetplug must be a list of plugin names or a mapping with 'plugins', got hetplug={value!r}"
        )
    value = dict(value)
    plugins = value.pop("plugins", None)
    if isinstance(plugins, str):
        plugins = [plugins]
    if not isinstance(plugins, (list, tuple)) or not plugins or not all(isinstance(p, str) for p in plugins):
        raise ValueError(
            f"hetplug.plugins must be a non-empty list of plugin names, got hetplug.plugins={plugins!r}"
        )
    options: dict[str, dict[str, Any]] = {}
    positions, opponents = SliceSource(), None
    shppo_agent: dict[str, int] = {}
    for key, opts in value.items():
        if key not in plugins:
            raise ValueError(
                f"unknown key hetplug.{key}: it is neither 'plugins' nor a selected plugin "
                f"(selected: {', '.join(plugins)})"
            )
        if opts is None:
            opts = {}
        if not isinstance(opts, Mapping):
            raise ValueError(f"hetplug.{key} must be a mapping of options, got hetplug.{key}={opts!r}")
        opts = dict(opts)
        if key == "shep":
            if "positions" in opts:
                positions = SliceSource.parse(opts.pop("positions"), "hetplug.shep.positions")
            if opts.get("opponents") is not None:
                opponents = SliceSource.parse(opts.pop("opponents"), "hetplug.shep.opponents")
            opts.pop("opponents", None)
        if key == "shppo":
            for name in SHPPO_AGENT_OPTIONS:
                if name in opts:
                    value_ = opts.pop(name)
                    if not isinstance(value_, int) or isinstance(value_, bool) or value_ < 1:
                        raise ValueError(f"hetplug.shppo.{name} must be an integer >= 1, got {value_!r}")
                    shppo_agent[name] = value_
        options[key] = _plain(opts)
    try:
        hetplug.get_plugin_manager(list(plugins), options)
    except ValueError as err:
        raise ValueError(f"hetplug: {err}") from None
    if "hetdps" in plugins and "shppo" in plugins:
        raise ValueError("hetplug.plugins: 'hetdps' and 'shppo' both replace the rnn agent; select one")
    return Settings(tuple(plugins), options, positions, opponents, shppo_agent)


def _plain(value: Any) -> Any:
    """sacred's ReadOnlyDict/ReadOnlyList -> dict/tuple, so configs accept them."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return value
