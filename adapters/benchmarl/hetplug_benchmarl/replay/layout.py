"""Where each trajectory lives in a BenchMARL transition storage.

BenchMARL stores transitions (its ``[B, T]`` batch reshaped to ``[B * T]``); hetplug's
prioritisers hand out one slot per trajectory (a row of the collected batch). The layout
is fixed: slot ``s`` occupies storage rows ``s * T .. s * T + T - 1``, step by step, so
a storage index is ``slot * T + step`` both ways. The writer fills it and records each
slot's valid length (``T``, or fewer for a Group-HER copy cut at its segment's end); the
sampler reads it.
"""

from __future__ import annotations

import torch


class TrajectoryLayout:
    """``slots`` trajectories of ``steps`` transitions each, on ``device``."""

    def __init__(self, slots: int, steps: int, device: torch.device | str) -> None:
        self.slots = slots
        self.steps = steps
        self.device = torch.device(device)
        #: valid steps of each slot
        self.length = torch.full((slots,), steps, dtype=torch.long, device=self.device)

    def rows(self, slots: torch.Tensor) -> torch.Tensor:
        """``[len(slots) * T]`` storage indices of the slots' transitions, slot by slot."""
        steps = torch.arange(self.steps, device=self.device)
        return (slots.to(self.device).unsqueeze(1) * self.steps + steps).reshape(-1)

    def split(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Storage indices -> ``(slot, step)``."""
        index = torch.as_tensor(index, device=self.device).reshape(-1)
        return index // self.steps, index % self.steps

    def valid(self, slots: torch.Tensor) -> torch.Tensor:
        """``[len(slots), T]`` True on each slot's valid steps."""
        return torch.arange(self.steps, device=self.device) < self.length[slots].unsqueeze(1)
