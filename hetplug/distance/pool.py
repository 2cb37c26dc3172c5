"""The heterogeneity-distance sample pool (HetDPS section 4.2, first step).

A ring of the most recent ``capacity`` time steps, each holding every agent's
``(x, y)`` pair: ``x [capacity, N, x_dim]``, ``y [capacity, N, y_dim]``. Memory is bounded
and allocated once; reads draw random rows (without replacement), so the CVAE sees
shuffled, Markov samples rather than trajectories in order.
"""

from __future__ import annotations

from typing import Any

import torch

from hetplug._checks import check_device, check_int, check_tensor, check_values
from hetplug.state import require_keys, state_int, state_tensor


class SamplePool:
    """Bounded, shuffled store of per-agent ``(x, y)`` samples."""

    def __init__(
        self, capacity: int, n_agents: int, x_dim: int, y_dim: int, device: torch.device | str = "cpu"
    ) -> None:
        check_int("capacity", capacity, 1)
        check_int("n_agents", n_agents, 1)
        check_int("x_dim", x_dim, 1)
        check_int("y_dim", y_dim, 1)
        device = check_device("device", device)
        self.capacity, self.n_agents, self.x_dim, self.y_dim = capacity, n_agents, x_dim, y_dim
        self.x = torch.zeros(capacity, n_agents, x_dim, device=device)
        self.y = torch.zeros(capacity, n_agents, y_dim, device=device)
        self.cursor = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def check(self, x: torch.Tensor, y: torch.Tensor, values: bool = True, where: str = "") -> None:
        """Raise unless ``x [S, N, x_dim]`` and ``y [S, N, y_dim]`` fit this pool (and, with
        ``values``, are finite: one host synchronisation)."""
        xn, yn = (f"{where}['x']", f"{where}['y']") if where else ("x", "y")
        check_tensor(xn, x, 3, "real")
        check_tensor(yn, y, 3, "real")
        want_x = (self.n_agents, self.x_dim)
        want_y = (self.n_agents, self.y_dim)
        if tuple(x.shape[1:]) != want_x:
            raise ValueError(
                f"{xn} must be [S, N={self.n_agents}, x_dim={self.x_dim}], got {xn} of shape {tuple(x.shape)}"
            )
        if tuple(y.shape[1:]) != want_y:
            raise ValueError(
                f"{yn} must be [S, N={self.n_agents}, y_dim={self.y_dim}], got {yn} of shape {tuple(y.shape)}"
            )
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"{yn} must have as many samples S as {xn} ({x.shape[0]}), got {yn} of shape {tuple(y.shape)}"
            )
        if values:
            check_values([(xn, x, "finite", None), (yn, y, "finite", None)])

    def add(self, x: torch.Tensor, y: torch.Tensor, check_values: bool = True) -> None:
        """Append S samples (the oldest are overwritten once full; only the last ``capacity`` of a
        larger batch are kept). ``check_values=False``: the caller validated the values."""
        self.check(x, y, values=check_values)
        x, y = x[-self.capacity :], y[-self.capacity :]
        s = x.shape[0]
        slots = (self.cursor + torch.arange(s, device=self.x.device)) % self.capacity
        self.x[slots] = x.to(self.x)
        self.y[slots] = y.to(self.y)
        self.cursor = (self.cursor + s) % self.capacity
        self.size = min(self.capacity, self.size + s)

    def sample(
        self, n: int | None = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` random stored steps (all of them, shuffled, when ``n`` is None or larger)."""
        rows = self.rows(n, generator)
        return self.x[rows], self.y[rows]

    def rows(self, n: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """The slots :meth:`sample` would read (same draw), for reading a part of each step."""
        if self.size == 0:
            raise ValueError("the sample pool is empty: add samples before fitting or measuring")
        n = self.size if n is None else min(n, self.size)
        return torch.randperm(self.size, generator=generator, device="cpu")[:n].to(self.x.device)

    def state_dict(self) -> dict[str, Any]:
        return {"x": self.x[: self.size].clone(), "y": self.y[: self.size].clone(), "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`, validated whole first (on error nothing changes)."""
        where = "sample pool"
        require_keys(where, state, ("x", "y", "cursor"))
        x = state_tensor(where, state, "x", [None, self.n_agents, self.x_dim])
        y = state_tensor(where, state, "y", [None, self.n_agents, self.y_dim])
        self.check(x, y, where=f"{where} state")
        if x.shape[0] > self.capacity:
            raise ValueError(
                f"{where} state['x'] must hold at most capacity={self.capacity} samples, got {x.shape[0]}"
            )
        cursor = state_int(where, state, "cursor", 0, self.capacity - 1)
        if x.shape[0] < self.capacity and cursor != x.shape[0]:
            raise ValueError(
                f"{where} state['cursor'] must equal the {x.shape[0]} samples held until the pool is full, "
                f"got {where} state['cursor']={cursor}"
            )
        self.x.zero_()
        self.y.zero_()
        self.x[: x.shape[0]] = x.to(self.x)
        self.y[: y.shape[0]] = y.to(self.y)
        self.size = x.shape[0]
        self.cursor = cursor
