"""What the plugins report, logged through EPyMARL's own logger under hetplug's names.

Plugins' results (their collected metrics, auxiliary losses and ``after_update`` values)
are kept as their latest values. Every ``learner_log_interval`` environment steps they are
flattened by :func:`hetplug.metrics.scalar_metrics` into ``hetplug/<method>/<name>``
floats, the names every host logs, and passed to the host's ``log_stat``: they appear in
its stats table, sacred's ``info.json`` and TensorBoard. A sharing plan (HetDPS) is also
recorded and written to the host's console log when a plugin returns it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hetplug.metrics import scalar_metrics
from hetplug.sharing import SharingPlan


class MetricsLog:
    """The latest plugin values of a run and the host-side logging of them.

    Attributes:
        values: ``{"<method>/<name>": value}`` as the plugins returned them (tensors,
            floats, plans).
        plans: ``[(update, agent -> slot)]`` for every sharing plan returned.
        logged: every metric name passed to the host's logger so far.
    """

    def __init__(self, log_interval: int) -> None:
        self.values: dict[str, Any] = {}
        self.plans: list[tuple[int, tuple[int, ...]]] = []
        self.logged: set[str] = set()
        self.log_interval = int(log_interval)
        self._logged_t = -self.log_interval - 1

    def update(self, values: Mapping[str, Any] | None) -> None:
        if values:
            self.values.update(values)

    def after_update(self, values: Mapping[str, Any] | None, update: int, console=None) -> None:
        """Keep ``after_update``'s values; record each sharing plan and write it to ``console``."""
        self.update(values)
        for name, value in (values or {}).items():
            if isinstance(value, SharingPlan):  # agent -> network after this regrouping
                self.plans.append((update, value.assignment))
                if console is not None:
                    console.info(f"hetplug {name.split('/')[0]} after update {update}: {value}")

    def write(self, logger, t_env: int) -> None:
        """Every ``log_interval`` steps: the scalar metrics to ``logger.log_stat`` (one host
        synchronisation per value)."""
        if t_env - self._logged_t < self.log_interval:
            return
        for name, value in scalar_metrics(self.values).items():
            logger.log_stat(name, value, t_env)
            self.logged.add(name)
        self._logged_t = t_env
