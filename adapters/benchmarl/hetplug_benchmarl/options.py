"""Adapter settings: where SHEP's agent positions come from in a BenchMARL batch.

VMAS observations start with the agent's own position (``agent.state.pos``) in every
scenario BenchMARL ships with a spatial layout (navigation, balance, sampling, ...), so
the default reads ``observation[..., 0:2]``. Other tasks name their own slice, or a key
the environment writes per agent (for example an ``info`` entry).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hetplug._checks import config_from_dict


def _check_slice(name: str, value: Any) -> tuple[int, int]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        or not 0 <= value[0] < value[1]
    ):
        raise ValueError(f"{name} must be [start, stop] with 0 <= start < stop, got {name}={value!r}")
    return int(value[0]), int(value[1])


def _check_key(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be a key (a string or a list of strings), got {name}={value!r}")
    return tuple(value)


@dataclass
class PositionSource:
    """Where to read ``[B, T, N, D]`` positions for one agent group.

    Attributes:
        key: the per-agent entry under the group, ``"observation"`` by default; a list
            such as ``["info", "pos"]`` names a nested entry.
        slice: ``[start, stop]`` of the last dimension holding the position.
    """

    key: tuple[str, ...] | str = "observation"
    slice: tuple[int, int] = (0, 2)

    def __post_init__(self) -> None:
        self.key = _check_key("positions.key", self.key)
        self.slice = _check_slice("positions.slice", self.slice)


@dataclass
class OpponentSource(PositionSource):
    """Opponent positions: another agent group of the same task (e.g. VMAS adversaries)."""

    group: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.group, str) or not self.group:
            raise ValueError(f"opponents.group must name an agent group, got opponents.group={self.group!r}")


@dataclass
class AdapterOptions:
    """Options of the BenchMARL adapter itself (the plugins' own options are separate).

    Attributes:
        positions: where agent positions are read (SHEP).
        opponents: None, or where opponent positions are read.
        replay_window: rollouts an on-policy prioritised buffer keeps.
    """

    positions: PositionSource = field(default_factory=PositionSource)
    opponents: OpponentSource | None = None
    replay_window: int = 1
    """On-policy algorithms (MAPPO, IPPO): how many rollouts the prioritised buffer keeps
    (1: minibatches come from the current rollout only; more: older rollouts stay
    eligible with the advantages computed when they were collected)."""

    def __post_init__(self) -> None:
        if (
            not isinstance(self.replay_window, int)
            or isinstance(self.replay_window, bool)
            or self.replay_window < 1
        ):
            raise ValueError(
                f"replay_window must be an integer >= 1, got replay_window={self.replay_window!r}"
            )
        if not isinstance(self.positions, PositionSource):
            self.positions = config_from_dict(PositionSource, self.positions, "positions")
        if self.opponents is not None and not isinstance(self.opponents, OpponentSource):
            self.opponents = config_from_dict(OpponentSource, self.opponents, "opponents")
