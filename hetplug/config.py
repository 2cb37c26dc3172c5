"""hetplug's one configuration language, shared by every host.

The same value is accepted by ``hetplug_benchmarl.wrap()`` / ``HetplugCallback``, by
BenchMARL's Hydra group ``hetplug`` and by the ``hetplug:`` key of an EPyMARL algorithm
yaml, and parsed here, by :func:`parse_config`::

    hetplug: [shep]                      # shorthand: plugin names with default options

    hetplug:                             # the full form
      plugins: [shep, hetdps]
      shep: {grid_shape: [8, 8]}         # one mapping of options per selected plugin
      hetdps: {interval: 50}
      positions: {key: obs, slice: [0, 2]}       # where agent positions are (SHEP), or
                                                 # {extractor: lbforaging} (EPyMARL)
      opponents: {group: adversary, slice: [0, 2]}
      replay_window: 1                   # on-policy hosts: rollouts a prioritised buffer keeps

Every error names the key as it is written (``hetplug.shep.grid_shape``) and the value.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: top-level keys besides the selected plugins' names
TOP_LEVEL_KEYS = ("plugins", "positions", "opponents", "replay_window")

#: named position extractors (``positions: {extractor: <name>}``): agents read from the
#: environment object at every step, where a host can reach it (EPyMARL: docs/epymarl.md)
POSITION_EXTRACTORS = ("lbforaging", "mpe", "rware", "smaclite")


def did_you_mean(value: str, choices: list[str] | tuple[str, ...]) -> str:
    """``" (did you mean 'shep'?)"`` when ``value`` is close to one of ``choices``, else ``""``."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_int(value: Any) -> bool:
    from hetplug._checks import is_int

    return is_int(value)


@dataclass(frozen=True)
class PositionSource:
    """Where a host reads ``[B, T, N, D]`` positions (SHEP's descriptors), or opponents'.

    Attributes:
        key: ``"obs"``: each agent's observation (BenchMARL: the group's
            ``observation``; EPyMARL: ``obs``); ``"state"``: the global state (EPyMARL);
            any other name (or a list, for a nested entry) is a per-agent entry of the
            host's batch (BenchMARL: under the agent group, e.g. ``["info", "pos"]``).
        slice: ``[start, stop]`` of the entry's last dimension.
        dim: coordinates per entity, to split a state slice, or one agent's view of several
            opponents, into entities (default 2 there; a per-agent slice is one entity).
        agent: opponents read from observations: whose observation holds them.
        group: opponents in BenchMARL: the agent group whose entries are read.
        extractor: instead of an entry's slice, a named extractor that reads the agents
            from the environment object (:data:`POSITION_EXTRACTORS`; hosts that cannot
            reach the environment refuse it).
    """

    key: str | tuple[str, ...] = "obs"
    slice: tuple[int, int] = (0, 2)
    dim: int | None = None
    agent: int = 0
    group: str | None = None
    extractor: str | None = None

    @classmethod
    def parse(cls, value: Any, where: str) -> PositionSource:
        """A source from a mapping like ``{key: obs, slice: [0, 2]}``; errors name ``where``."""
        if isinstance(value, PositionSource):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(
                f"{where} must be a mapping like {{key: obs, slice: [0, 2]}}, got {where}={value!r}"
            )
        names = ("key", "slice", "dim", "agent", "group", "extractor")
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(
                f"unknown key {where}.{unknown[0]}{did_you_mean(unknown[0], names)}; "
                f"accepted: {', '.join(sorted(names))}"
            )
        if "extractor" in value:
            return cls._extractor(value, where)
        key = value.get("key", "obs")
        if isinstance(key, str):
            key = key if "/" not in key else tuple(key.split("/"))
        if isinstance(key, (list, tuple)):
            key = tuple(key)
            if not all(isinstance(k, str) for k in key):
                raise TypeError(
                    f"{where}.key must be a name or a list of names, got {where}.key={value['key']!r}"
                )
            if not key or not all(key):
                raise ValueError(
                    f"{where}.key must be a name or a list of names, got {where}.key={value['key']!r}"
                )
            key = key[0] if len(key) == 1 else key
        elif not isinstance(key, str):
            raise TypeError(f"{where}.key must be a name or a list of names, got {where}.key={key!r}")
        elif not key:
            raise ValueError(f"{where}.key must be a name or a list of names, got {where}.key={key!r}")
        sl = value.get("slice", (0, 2))
        expect = f"{where}.slice must be [start, stop] with 0 <= start < stop"
        if not isinstance(sl, (list, tuple)) or not all(_is_int(v) for v in sl):
            raise TypeError(f"{expect}, got {where}.slice={sl!r}")
        if len(sl) != 2 or not 0 <= sl[0] < sl[1]:
            raise ValueError(f"{expect}, got {where}.slice={sl!r}")
        dim = value.get("dim")
        if dim is not None:
            expect = f"{where}.dim must be an integer >= 1 dividing the slice width {sl[1] - sl[0]}"
            if not _is_int(dim):
                raise TypeError(f"{expect}, got {where}.dim={dim!r}")
            if dim < 1 or (sl[1] - sl[0]) % dim:
                raise ValueError(f"{expect}, got {where}.dim={dim!r}")
        agent = value.get("agent", 0)
        if not _is_int(agent):
            raise TypeError(f"{where}.agent must be an integer >= 0, got {where}.agent={agent!r}")
        if agent < 0:
            raise ValueError(f"{where}.agent must be an integer >= 0, got {where}.agent={agent!r}")
        group = value.get("group")
        if group is not None and not isinstance(group, str):
            raise TypeError(f"{where}.group must name an agent group, got {where}.group={group!r}")
        if group is not None and not group:
            raise ValueError(f"{where}.group must name an agent group, got {where}.group={group!r}")
        return cls(key=key, slice=(int(sl[0]), int(sl[1])), dim=dim, agent=int(agent), group=group)

    @classmethod
    def _extractor(cls, value: Mapping, where: str) -> PositionSource:
        others = sorted(set(value) - {"extractor"})
        if others:
            raise ValueError(
                f"{where}.extractor replaces key and slice: give one or the other (got {', '.join(others)})"
            )
        name = value["extractor"]
        if not isinstance(name, str):
            raise TypeError(
                f"{where}.extractor must be one of {', '.join(POSITION_EXTRACTORS)}, got {where}.extractor={name!r}"
            )
        if name not in POSITION_EXTRACTORS:
            raise ValueError(
                f"unknown extractor {where}.extractor={name!r}{did_you_mean(name, POSITION_EXTRACTORS)}; "
                f"extractors: {', '.join(POSITION_EXTRACTORS)}"
            )
        return cls(extractor=name)

    def as_dict(self) -> dict[str, Any]:
        """The mapping form back (``{extractor: name}`` or the entry's set fields)."""
        if self.extractor is not None:
            return {"extractor": self.extractor}
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @property
    def width(self) -> int:
        return self.slice[1] - self.slice[0]

    @property
    def entity_dim(self) -> int:
        """Coordinates per entity when a slice holds several entities (``dim``, default 2)."""
        return self.dim or 2


@dataclass(frozen=True)
class HetplugConfig:
    """The parsed configuration (see the module docstring for the language).

    Attributes:
        plugins: the selected plugin names, in order.
        options: ``{plugin: {option: value}}`` for the selected plugins (validated by
            each plugin's config class).
        positions: where agent positions are read, or None (the host's default, if any).
        opponents: where opponent positions are read, or None.
        replay_window: on-policy hosts: how many rollouts a prioritised buffer keeps.
    """

    plugins: tuple[str, ...] = ()
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    positions: PositionSource | None = None
    opponents: PositionSource | None = None
    replay_window: int = 1

    def as_dict(self) -> dict[str, Any]:
        """The full form back (for logs and round trips)."""
        out: dict[str, Any] = {"plugins": list(self.plugins), **{k: dict(v) for k, v in self.options.items()}}
        for name in ("positions", "opponents"):
            source = getattr(self, name)
            if source is not None:
                out[name] = source.as_dict()
        out["replay_window"] = self.replay_window
        return out


def plain(value: Any) -> Any:
    """Host containers (sacred's ReadOnlyDict/List, OmegaConf's after to_container) -> dict/list."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def parse_config(value: Any, where: str = "hetplug") -> HetplugConfig:
    """Parse and validate a configuration value (list shorthand or full mapping).

    ``None``, ``[]`` and ``{}`` give an empty configuration (no plugin: the host runs
    unchanged). Every plugin option is checked by building the plugin manager once.

    Raises:
        TypeError: a value of the wrong type (``'yes'`` for a bool, ``'8x8'`` for a list of
            integers), naming the key (``hetplug.<...>``), the value and what is expected.
        ValueError: a value of the right type outside its domain, likewise.
    """
    from hetplug.plugins import get_plugin_manager

    if isinstance(value, HetplugConfig):
        return value
    value = plain(value)
    if value is None:
        return HetplugConfig()
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        value = {"plugins": value}
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{where} must be a list of plugin names or a mapping with 'plugins', got {where}={value!r}"
        )
    plugins = value.get("plugins", [])
    if plugins is None:
        plugins = []
    if isinstance(plugins, str):
        plugins = [plugins]
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise TypeError(f"{where}.plugins must be a list of plugin names, got {where}.plugins={plugins!r}")
    if not all(plugins):
        raise ValueError(f"{where}.plugins must be a list of plugin names, got {where}.plugins={plugins!r}")
    accepted = [*TOP_LEVEL_KEYS, *plugins]
    options: dict[str, dict[str, Any]] = {}
    for key, opts in value.items():
        if key in TOP_LEVEL_KEYS:
            continue
        if key not in plugins:
            raise ValueError(
                f"unknown key {where}.{key}{did_you_mean(key, accepted)}: it is neither one of "
                f"{', '.join(TOP_LEVEL_KEYS)} nor a selected plugin (selected: {', '.join(plugins) or 'none'})"
            )
        if opts is None:
            opts = {}
        if not isinstance(opts, Mapping):
            raise TypeError(f"{where}.{key} must be a mapping of options, got {where}.{key}={opts!r}")
        options[key] = dict(opts)
    positions = value.get("positions")
    opponents = value.get("opponents")
    positions = None if positions is None else PositionSource.parse(positions, f"{where}.positions")
    opponents = None if opponents is None else PositionSource.parse(opponents, f"{where}.opponents")
    window = value.get("replay_window", 1)
    if not _is_int(window):
        raise TypeError(
            f"{where}.replay_window must be an integer >= 1, got {where}.replay_window={window!r}"
        )
    if window < 1:
        raise ValueError(
            f"{where}.replay_window must be an integer >= 1, got {where}.replay_window={window!r}"
        )
    get_plugin_manager(plugins, options, _where=where)  # names and options, checked now
    return HetplugConfig(tuple(plugins), options, positions, opponents, int(window))
