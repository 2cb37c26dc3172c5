"""The ``hetplug`` key of an EPyMARL algorithm config, read and checked before the run
builds anything.

The key is hetplug's one configuration language (:mod:`hetplug.config`), as in every host::

    hetplug: [per]                                   # plugin names, default options
    hetplug:                                         # the full form
      plugins: [shep]
      shep: {grid_shape: [8, 8], grid_low: [0, 0], grid_high: [7, 7]}
      positions: {key: obs, slice: [9, 11]}          # each agent's (y, x) in its observation

What EPyMARL cannot do is refused here, naming the key: SHEP without ``positions`` (its
batch has no positions, and no default could be right: lbforaging's ``obs[0:2]`` is a
food item), positions other than an extractor or slices of ``obs`` or ``state`` (its batch
has no other entries), agent groups (it has one team), ``replay_window`` (BenchMARL's; here
the buffer's ``buffer_size`` is the window), and two plugins that both replace the agent.
The wiring checks the run's learner, mixer and mac (:mod:`hetplug_epymarl.wiring`), the
runner checks that an extractor finds its environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import hetplug
from hetplug.config import POSITION_EXTRACTORS
from hetplug_epymarl.env_fields import EXTRACTORS
from hetplug_epymarl.wiring import AGENTS

#: plugins that read agent positions: refused without ``hetplug.positions``
NEEDS_POSITIONS = ("shep",)


def _moved_keys(value: Any) -> None:
    """Name the new place of keys that an older hetplug_epymarl read elsewhere."""
    if not isinstance(value, Mapping):
        return
    for plugin, options in value.items():
        for key in ("positions", "opponents"):
            if isinstance(options, Mapping) and key in options and plugin not in ("positions", "opponents"):
                raise ValueError(
                    f"hetplug.{plugin}.{key} is now hetplug.{key} (top level, beside plugins), "
                    f"written {{key: obs, slice: [start, stop]}}"
                )
    for key in ("positions", "opponents"):
        if isinstance(value.get(key), Mapping) and "source" in value[key]:
            raise ValueError(f"hetplug.{key}.source is now hetplug.{key}.key (obs or state)")


def read_config(value: Any) -> hetplug.HetplugConfig | None:
    """``args.hetplug`` -> the parsed configuration, or None when it selects no plugin (no
    key, ``[]``, ``{}``, ``plugins: []``): the host then runs untouched.

    Raises:
        ValueError: naming the key (``hetplug.<...>``), the value and what is expected.
    """
    _moved_keys(value)
    config = hetplug.parse_config(value)
    if not config.plugins:
        return None
    needs = [p for p in NEEDS_POSITIONS if p in config.plugins]
    if needs and config.positions is None:
        raise ValueError(
            f"hetplug.positions is required with {needs[0]!r}: EPyMARL's episodes carry no agent "
            f"positions; give positions: {{extractor: {'|'.join(POSITION_EXTRACTORS)}}} or "
            f"{{key: obs|state, slice: [start, stop]}} (docs/epymarl.md)"
        )
    for name in ("positions", "opponents"):
        source = getattr(config, name)
        if source is None:
            continue
        if source.extractor is not None:
            if name == "opponents" and EXTRACTORS[source.extractor].opponents is None:
                having = [e.name for e in EXTRACTORS.values() if e.opponents is not None]
                raise ValueError(
                    f"hetplug.opponents.extractor={source.extractor!r} has no opponents; "
                    f"extractors with opponents: {', '.join(having)}"
                )
            continue
        if source.key not in ("obs", "state"):
            raise ValueError(
                f"hetplug.{name}.key must be 'obs' or 'state' in EPyMARL (its episode batch has no "
                f"other entries), got hetplug.{name}.key={source.key!r}"
            )
        if source.group is not None:
            raise ValueError(
                f"hetplug.{name}.group names a BenchMARL agent group; EPyMARL has one team, leave "
                f"it out (got hetplug.{name}.group={source.group!r})"
            )
    if config.replay_window != 1:
        raise ValueError(
            f"hetplug.replay_window is BenchMARL's (rollouts its prioritised buffer keeps); in EPyMARL "
            f"the buffer keeps buffer_size episodes, so set buffer_size instead (got "
            f"hetplug.replay_window={config.replay_window})"
        )
    agents = [name for name in AGENTS if name in config.plugins]
    if len(agents) > 1:
        raise ValueError(
            f"hetplug.plugins: {' and '.join(map(repr, agents))} both replace the rnn agent; select one"
        )
    return config
