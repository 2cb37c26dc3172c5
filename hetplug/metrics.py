"""What hosts log: plugin results -> scalar metrics named ``hetplug/<method>/<name>``.

Plugins return ``{"<method>/<name>": value}`` from their hooks (``shep/moran_i``,
``hetdps/plan``, ``shppo/inference_loss``); every host logs them under the same names,
prefixed ``hetplug/``. A host with several agent groups (BenchMARL) puts the group after
the method: ``hetplug/<method>/<group>/<name>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from hetplug.sharing.plan import SharingPlan

PREFIX = "hetplug/"


def metric_name(name: str, group: str | None = None) -> str:
    """``shep/moran_i`` -> ``hetplug/shep/moran_i`` (or ``hetplug/shep/<group>/moran_i``)."""
    method, sep, rest = name.partition("/")
    if group is None or not sep:
        return PREFIX + name
    return f"{PREFIX}{method}/{group}/{rest}"


def scalar_metrics(values: Mapping[str, Any], group: str | None = None) -> dict[str, float]:
    """Flatten plugin results into named floats (one host synchronisation per value: call
    it once per logging step, not per environment step).

    * scalars (0-d or one-element tensors, ints, floats) keep their name;
    * a :class:`~hetplug.sharing.SharingPlan` becomes each agent's slot, ``<name>/agent_<i>``;
    * a square ``[N, N]`` matrix (a distance matrix) becomes its upper triangle,
      ``<name>/<i>_<j>``;
    * anything else (e.g. the ``[stored]`` priorities) is not a metric and is skipped.
    """
    out: dict[str, float] = {}
    for name, value in values.items():
        if isinstance(value, SharingPlan):
            for i, slot in enumerate(value.assignment):
                out[metric_name(f"{name}/agent_{i}", group)] = float(slot)
        elif isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape[0] == value.shape[1] > 1:
            n = value.shape[0]
            flat = value.detach().cpu().tolist()  # one transfer for the whole matrix
            for i in range(n):
                for j in range(i + 1, n):
                    out[metric_name(f"{name}/{i}_{j}", group)] = float(flat[i][j])
        elif isinstance(value, torch.Tensor) and value.numel() == 1:
            out[metric_name(name, group)] = float(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[metric_name(name, group)] = float(value)
    return out
