"""hetplug: heterogeneity-aware methods as plug-ins for multi-agent RL codebases.

The core (this package) depends only on torch, numpy, scipy, scikit-learn and pluggy.
Hosts call the hooks in :mod:`hetplug.hookspecs` through :func:`get_plugin_manager`.
"""

from __future__ import annotations

from hetplug.config import HetplugConfig, PositionSource, parse_config
from hetplug.hookspecs import hookimpl
from hetplug.plugins import (
    available_plugins,
    check_plugin_state,
    get_plugin_manager,
    load_plugin_state,
    plugin_state,
)
from hetplug.types import CollectedResult, HostObjects, HostSpec, SampleResult, TrajectoryBatch

__version__ = "0.1.0"

__all__ = [
    "CollectedResult",
    "HetplugConfig",
    "HostObjects",
    "HostSpec",
    "PositionSource",
    "SampleResult",
    "TrajectoryBatch",
    "__version__",
    "available_plugins",
    "check_plugin_state",
    "get_plugin_manager",
    "hookimpl",
    "load_plugin_state",
    "parse_config",
    "plugin_state",
]
