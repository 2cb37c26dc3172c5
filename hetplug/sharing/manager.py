"""``DynamicSharingManager``: HetDPS's regrouping loop (Algorithm 1, lines 9-25).

Every ``interval`` updates the host (or the ``hetdps`` plugin) passes the current ``[N, N]``
heterogeneity distance matrix to :meth:`DynamicSharingManager.update`; the manager clusters
the agents (:func:`cluster_agents`), matches the groups with the previous ones
(:func:`match_groups`) and returns a :class:`SharingPlan`. Training starts from full
sharing (every agent on slot 0) or from no sharing (agent i on slot i); that initial
paradigm is the "previous clustering" of the first update, so the first regrouping is a
split (from full sharing) or a merge (from no sharing) like any later one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hetplug._checks import check_choice, check_int, check_range, config_from_dict
from hetplug.sharing.clustering import check_preference, cluster_agents
from hetplug.sharing.plan import MERGE_MODES, SharingPlan, kept_plan, match_groups
from hetplug.state import require_keys, state_int


@dataclass
class SharingConfig:
    """Settings of the dynamic sharing manager (the paper uses the same ones on every task)."""

    start: str = "full"
    """``"full"`` (all agents share slot 0) or ``"none"`` (agent i uses slot i)."""
    n_slots: int | None = None
    """Networks the host preallocates; None means one per agent (never too few)."""
    interval: int = 100
    """Quantisation interval, in host updates (Table 6: 20 to 2000 perform alike)."""
    merge_mode: str = "weighted"
    preference: str | float = "median"
    """Affinity propagation preference; see :mod:`hetplug.sharing.clustering`."""
    damping: float = 0.5
    retry_damping: float | None = 0.9
    """A fit that does not converge at ``damping`` is repeated once at this damping (None: no retry)."""
    max_iter: int = 200
    convergence_iter: int = 15
    random_state: int = 0
    homogeneous_below: float = 0.0
    """All agents form one group when no off-diagonal distance exceeds this."""

    def __post_init__(self) -> None:
        check_choice("start", self.start, ("full", "none"))
        if self.n_slots is not None:
            check_int("n_slots", self.n_slots, 1)
        check_int("interval", self.interval, 1)
        check_choice("merge_mode", self.merge_mode, MERGE_MODES)
        check_preference(self.preference)
        check_range("damping", self.damping, 0.5, 1.0, high_open=True)
        if self.retry_damping is not None:
            check_range("retry_damping", self.retry_damping, 0.5, 1.0, high_open=True)
        check_int("max_iter", self.max_iter, 1)
        check_int("convergence_iter", self.convergence_iter, 1)
        check_int("random_state", self.random_state, 0)
        check_range("homogeneous_below", self.homogeneous_below, 0.0)


def check_distance(distance: Any, n_agents: int) -> np.ndarray:
    """A float64 copy of a valid ``[N, N]`` distance matrix, or an error saying what is wrong
    (``TypeError`` for something that is not a matrix of numbers)."""
    if isinstance(distance, torch.Tensor):
        if distance.dtype == torch.bool or distance.is_complex():
            raise TypeError(f"distance must be a real [N, N] matrix, got distance of dtype {distance.dtype}")
        distance = distance.detach().to("cpu", torch.float64).numpy()
    elif not isinstance(distance, (np.ndarray, list, tuple)):
        raise TypeError(f"distance must be an [N, N] tensor or array, got distance={distance!r}")
    try:
        d = np.array(distance, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"distance must be an [N, N] matrix of numbers, got distance={distance!r}") from None
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"distance must be a square [N, N] matrix, got distance of shape {d.shape}")
    if d.shape[0] != n_agents:
        raise ValueError(
            f"distance must be [n_agents, n_agents] = [{n_agents}, {n_agents}], got distance of shape {d.shape}"
        )
    if not np.isfinite(d).all():
        i, j = np.argwhere(~np.isfinite(d))[0]
        raise ValueError(f"distance must be finite, got distance[{i}, {j}]={d[i, j]}")
    if (d < 0).any():
        i, j = np.argwhere(d < 0)[0]
        raise ValueError(f"distance must be >= 0, got distance[{i}, {j}]={d[i, j]}")
    tol = 1e-6 * max(1.0, float(np.abs(d).max()))
    asym = np.abs(d - d.T)
    if (asym > tol).any():
        i, j = np.unravel_index(int(np.argmax(asym)), asym.shape)
        raise ValueError(
            f"distance must be symmetric, got distance[{i}, {j}]={d[i, j]} but distance[{j}, {i}]={d[j, i]}"
        )
    diag = np.abs(np.diagonal(d))
    if (diag > tol).any():
        i = int(np.argmax(diag))
        raise ValueError(f"distance must have a zero diagonal, got distance[{i}, {i}]={d[i, i]}")
    return 0.5 * (d + d.T)


class DynamicSharingManager:
    """Groups N agents onto network slots from heterogeneity distances.

    Attributes:
        assignment: ``[N]`` numpy int64, each agent's current slot.
        last_plan: the plan of the latest :meth:`update`, or None.
    """

    def __init__(self, n_agents: int, config: SharingConfig | dict | None = None) -> None:
        check_int("n_agents", n_agents, 1)
        self.config = config_from_dict(SharingConfig, config, "sharing")
        self.n_agents = n_agents
        self.n_slots = self.config.n_slots or n_agents
        if self.config.start == "none" and self.n_slots < n_agents:
            raise ValueError(
                f"start='none' needs one slot per agent: n_slots={self.n_slots} < n_agents={n_agents}"
            )
        self.assignment = (
            np.zeros(n_agents, dtype=np.int64) if self.config.start == "full" else np.arange(n_agents)
        )
        self.rng = np.random.default_rng(self.config.random_state)
        self.last_plan: SharingPlan | None = None
        self.n_regroupings = 0

    def routing(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """``[N]`` int64 agent -> slot."""
        return torch.as_tensor(self.assignment, dtype=torch.int64, device=device)

    def due(self, update: int) -> bool:
        """Whether host update number ``update`` (1-based) ends a quantisation interval."""
        check_int("update", update, 0)
        return update > 0 and update % self.config.interval == 0

    def update(self, distance: torch.Tensor | np.ndarray) -> SharingPlan:
        """Cluster, match and return the plan; the manager's ``assignment`` becomes the plan's.

        Raises ``ValueError`` for a matrix that is not square, not ``n_agents`` wide, not
        finite, negative, asymmetric or with a non-zero diagonal; nothing changes then.
        """
        d = check_distance(distance, self.n_agents)
        c = self.config
        result = cluster_agents(
            d, c.preference, c.damping, c.max_iter, c.convergence_iter, c.random_state, c.homogeneous_below,
            c.retry_damping,
        )  # fmt: skip
        if not result.converged:
            plan = kept_plan(self.assignment, self.n_slots, "affinity propagation did not converge")
        elif int(result.labels.max()) + 1 > self.n_slots:
            plan = kept_plan(
                self.assignment,
                self.n_slots,
                f"{int(result.labels.max()) + 1} groups but only n_slots={self.n_slots}",
                result.labels,
            )
        else:
            plan = match_groups(self.assignment, result.labels, d, self.n_slots, c.merge_mode, self.rng)
        plan.metrics.update(
            {"n_iter": result.n_iter, "preference": result.preference, "damping": result.damping}
        )
        self.assignment = np.array(plan.assignment, dtype=np.int64)
        self.last_plan = plan
        self.n_regroupings += 1
        return plan

    def state_dict(self) -> dict[str, Any]:
        return {
            "assignment": self.assignment.tolist(),
            "rng": self.rng.bit_generator.state,
            "n_regroupings": self.n_regroupings,
        }

    def check_state(self, state: Any) -> dict[str, Any]:
        """Validate a :meth:`state_dict` without changing anything; returns what
        :meth:`load_state_dict` assigns."""
        where = "sharing manager"
        require_keys(where, state, ("assignment", "rng", "n_regroupings"))
        raw = state["assignment"]
        if isinstance(raw, (str, bytes)) or not isinstance(raw, (list, tuple, np.ndarray)):
            raise TypeError(f"{where} state['assignment'] must be a list of slots, got {raw!r}")
        try:
            assignment = np.asarray(raw, dtype=np.int64)
        except (TypeError, ValueError):
            raise TypeError(f"{where} state['assignment'] must be a list of slots, got {raw!r}") from None
        if (
            assignment.shape != (self.n_agents,)
            or (assignment < 0).any()
            or (assignment >= self.n_slots).any()
        ):
            raise ValueError(
                f"{where} state['assignment'] must hold one slot in [0, n_slots={self.n_slots}) per agent "
                f"(n_agents={self.n_agents}), got {where} state['assignment']={list(raw)!r}"
            )
        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = state["rng"]
        except (TypeError, ValueError, KeyError):
            raise ValueError(
                f"{where} state['rng'] must be a numpy bit generator state ({type(rng.bit_generator).__name__}), "
                f"got {where} state['rng']={state['rng']!r}"
            ) from None
        n = state_int(where, state, "n_regroupings", 0)
        return {"assignment": assignment, "rng": state["rng"], "n_regroupings": n}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`, validated whole first (on error nothing changes)."""
        self._assign_state(self.check_state(state))

    def _assign_state(self, new: dict[str, Any]) -> None:
        self.assignment = new["assignment"]
        self.rng.bit_generator.state = new["rng"]
        self.n_regroupings = new["n_regroupings"]
        self.last_plan = None  # a report of the latest update, not state: none since loading
