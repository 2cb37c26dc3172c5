"""hetplug's metrics in a BenchMARL run: logged through the experiment's loggers and kept.

Plugin results (every hook's named values) become floats named ``hetplug/<method>/<name>``
(:func:`hetplug.metrics.scalar_metrics`; with several agent groups,
``hetplug/<method>/<group>/<name>``), logged once per training iteration at the
experiment's iteration. The :class:`MetricLog` also keeps them in memory, with the
structured results (sharing plans, distance matrices) and each group's latest raw values
(e.g. the stored priorities), for reports such as ``hetplug demo``.
"""

from __future__ import annotations

from typing import Any

import torch

from hetplug.metrics import scalar_metrics
from hetplug.sharing import SharingPlan


def _structured(value: Any) -> bool:
    """Plans and square matrices: decisions worth keeping whole, not only as scalars."""
    if isinstance(value, SharingPlan):
        return True
    return isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape[0] == value.shape[1] > 1


class MetricLog:
    """Per group: ``rows`` of ``(update, {name: float})``, ``events`` of ``(update, {name:
    plan or matrix})`` and the ``latest`` raw values of the last iteration."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[int, dict[str, float]]]] = {}
        self.events: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self.latest: dict[str, dict[str, Any]] = {}

    def record(self, exp, group: str, update: int, values: dict[str, Any]) -> dict[str, float]:
        """Log ``values`` of ``group`` at the experiment's current iteration; returns the scalars."""
        scalars = scalar_metrics(values, group=group if len(exp.group_map) > 1 else None)
        exp.logger.log(scalars, step=exp.n_iters_performed)
        self.rows.setdefault(group, []).append((update, scalars))
        structured = {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in values.items()
                      if _structured(v)}  # fmt: skip
        if structured:
            self.events.setdefault(group, []).append((update, structured))
        self.latest[group] = dict(values)
        return scalars

    @property
    def history(self) -> dict[str, list[float]]:
        """``{name: [value, ...]}`` in the order they were logged (all groups)."""
        out: dict[str, list[float]] = {}
        for rows in self.rows.values():
            for _, scalars in rows:
                for name, value in scalars.items():
                    out.setdefault(name, []).append(value)
        return out

    def regroupings(self, group: str) -> list[tuple[int, tuple[int, ...]]]:
        """HetDPS: ``[(update, agent -> slot)]`` after every regrouping of ``group``."""
        return [(u, v["hetdps/plan"].assignment) for u, v in self.events.get(group, []) if "hetdps/plan" in v]

    def distances(self, group: str) -> list[torch.Tensor]:
        """HetDPS: the ``[N, N]`` distance matrix behind every regrouping of ``group``."""
        return [v["hetdps/distance"] for _, v in self.events.get(group, []) if "hetdps/distance" in v]
