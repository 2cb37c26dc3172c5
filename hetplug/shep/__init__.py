"""SHEP: spatial-heterogeneity-driven experience prioritisation (shep.txt)."""

from hetplug.shep.config import SHEPConfig
from hetplug.shep.group_her import find_segments, relabel
from hetplug.shep.scoring import (
    Descriptors,
    advantage,
    describe,
    intrinsic_reward,
    situation_score,
    step_priority,
    temporal_change,
    trajectory_priority,
)

__all__ = [
    "Descriptors",
    "SHEPConfig",
    "advantage",
    "describe",
    "find_segments",
    "intrinsic_reward",
    "relabel",
    "situation_score",
    "step_priority",
    "temporal_change",
    "trajectory_priority",
]
