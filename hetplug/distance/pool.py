"""The heterogeneity-distance sample pool (HetDPS section 4.2, first step).

A ring of the most recent ``capacity`` time steps, each holding every agent's
``(x, y)`` pair: ``x [capacity, N, x_dim]``, ``y [capacity, N, y_dim]``. Memory is bounded
and allocated once; reads draw random rows (without replacement), so the CVAE sees
shuffled, Markov samples rather than trajectories in order.
"""

from __future__ import annotations

from typing import Any

import torch

from hetplug._checks import check_int, check_tensor


class SamplePool:
    """Bounded, shuffled store of per-agent ``(x, y)`` samples."""

    def __init__(
        self, capacity: int, n_agents: int, x_dim: int, y_dim: int, device: torch.device | str = "cpu"
    ) -> None:
        check_int("capacity", capacity, 1)
        check_int("n_agents", n_agents, 1)
        check_int("x_dim", x_dim, 1)
        check_int("y_dim", y_dim, 1)
        self.capacity, self.n_agents, self.x_dim, self.y_dim = capacity, n_agents, x_dim, y_dim
        self.x = torch.zeros(capacity, n_agents, x_dim, device=device)
        self.y = torch.zeros(capacity, n_agents, y_dim, device=device)
        self.cursor = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def check(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x [S, N, x_dim]`` and ``y [S, N, y_dim]`` fit this pool."""
        check_tensor("x", x, 3)
        check_tensor("y", y, 3)
        want_x = (self.n_agents, self.x_dim)
        want_y = (self.n_agents, self.y_dim)
        if tuple(x.shape[1:]) != want_x:
            raise ValueError(f"x must be [S, N={self.n_agents}, x_dim={self.x_dim}], got {tuple(x.shape)}")
        if tuple(y.shape[1:]) != want_y:
            raise ValueError(f"y must be [S, N={self.n_agents}, y_dim={self.y_dim}], got {tuple(y.shape)}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"x and y must have the same number of samples S, got {x.shape[0]} and {y.shape[0]}"
            )
        if not (bool(torch.isfinite(x).all()) and bool(torch.isfinite(y).all())):
            raise ValueError("x and y must be finite (found NaN or inf)")

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Append S samples (the oldest are overwritten once full; only the last ``capacity`` of a
        larger batch are kept)."""
        self.check(x, y)
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
        x, y = state["x"], state["y"]
        self.check(x, y)
        if x.shape[0] > self.capacity:
            raise ValueError(f"saved pool holds {x.shape[0]} samples, more than capacity={self.capacity}")
        self.x.zero_()
        self.y.zero_()
        self.x[: x.shape[0]] = x.to(self.x)
        self.y[: y.shape[0]] = y.to(self.y)
        self.size = x.shape[0]
        self.cursor = int(state["cursor"]) % self.capacity
