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
        #: every slot holds all ``steps`` steps (known on the host: no slot was written shorter)
        self.full = True

    def rows(self, slots: torch.Tensor) -> torch.Tensor:
        """``[len(slots) * T]`` storage indices of the slots' transitions, slot by slot."""
        steps = torch.arange(self.steps, device=self.device)
        return (slots.to(self.device).unsqueeze(1) * self.steps + steps).reshape(-1)

    def split(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Storage indices -> ``(slot, step)``."""
        index = torch.as_tensor(index, device=self.device).reshape(-1)
        return index // self.steps, index % self.steps

    def valid(self, slots: torch.Tensor) -> torch.Tensor | None:
        """``[len(slots), T]`` True on each slot's valid steps, or None when all are (every
        slot is full: ``hetplug_update_priorities``' mask then says None)."""
        if self.full:
            return None
        return torch.arange(self.steps, device=self.device) < self.length[slots].unsqueeze(1)

    def set_length(self, slots: torch.Tensor, lengths: torch.Tensor | None) -> None:
        """Record the valid steps of the trajectories written at ``slots`` (None: all)."""
        self.length[slots] = self.steps if lengths is None else lengths.to(torch.long)
        self.full = self.full and lengths is None

    def reset(self, lengths: torch.Tensor | None = None) -> None:
        """Every slot full, or the given ``[slots]`` lengths (a restored state)."""
        if lengths is None:
            self.length.fill_(self.steps)
            self.full = True
        else:
            self.length.copy_(lengths)
            self.full = bool((self.length == self.steps).all())  # once, when restoring
