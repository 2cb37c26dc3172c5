"""A TorchRL ``Writer`` that places whole trajectories at the slots hetplug chose.

Before BenchMARL extends a group's buffer with the iteration's transitions, the adapter
asks the prioritiser for slots (``hetplug_replay_add``) and :meth:`TrajectoryWriter.stage`
them here, row order; Group-HER's relabelled copies are staged after them with their own
transitions and valid lengths. ``extend`` then writes the originals, then the copies,
each at its slot's rows of the :class:`~hetplug_benchmarl.replay.layout.TrajectoryLayout`.
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.data.replay_buffers.writers import Writer

from hetplug_benchmarl.replay.layout import TrajectoryLayout


class TrajectoryWriter(Writer):
    """Writes staged trajectories; refuses data the adapter did not stage."""

    def __init__(self, layout: TrajectoryLayout) -> None:
        super().__init__()
        self.layout = layout
        self._slots: torch.Tensor | None = None
        #: Group-HER copies waiting for the next extend: (slots, transitions [B' * T], lengths)
        self._copies: list[tuple[torch.Tensor, TensorDictBase, torch.Tensor]] = []

    def stage(self, slots: torch.Tensor) -> None:
        """The slots of the next extend's trajectories (``hetplug_replay_add``), row order."""
        self._slots = slots.to(self.layout.device)

    def stage_copies(self, slots: torch.Tensor, transitions: TensorDictBase, lengths: torch.Tensor) -> None:
        """Relabelled copies, written after the next extend's originals."""
        self._copies.append((slots.to(self.layout.device), transitions, lengths.to(self.layout.device)))

    def map_copies(self, fn) -> None:
        """Apply ``fn`` to the staged copies' transitions (the buffer's inverse transform)."""
        self._copies = [(slots, fn(transitions), lengths) for slots, transitions, lengths in self._copies]

    @property
    def staged_copies(self) -> list[TensorDictBase]:
        """The copies' transitions the next extend will write (for their advantages)."""
        return [transitions for _, transitions, _ in self._copies]

    def extend(self, data: TensorDictBase) -> torch.Tensor:
        if self._slots is None:
            raise RuntimeError(
                "hetplug: the replay buffer was extended with a batch the hetplug callback did not "
                "see in on_batch_collected; add data only through the experiment's collection loop"
            )
        slots, self._slots = self._slots, None
        copies, self._copies = self._copies, []
        T = self.layout.steps
        if data.shape[0] != slots.numel() * T:
            raise RuntimeError(
                f"hetplug: extended {data.shape[0]} transitions, expected {slots.numel()} trajectories "
                f"x {T} steps"
            )
        index = [self._write(slots, data, None)]
        for copy_slots, transitions, lengths in copies:
            index.append(self._write(copy_slots, transitions, lengths))
        return torch.cat(index)

    def _write(self, slots: torch.Tensor, data: TensorDictBase, lengths: torch.Tensor | None) -> torch.Tensor:
        index = self.layout.rows(slots)
        self._storage.set(index.to(data.device), data)
        self.layout.set_length(slots, lengths)
        return index

    def add(self, data: Any) -> int:
        raise RuntimeError(
            "hetplug: single-transition add() is not supported; the buffer takes whole batches"
        )

    def _empty(self, empty_write_count: bool = True) -> None:
        self._slots = None
        self._copies = []
        self.layout.reset()

    def state_dict(self) -> dict[str, Any]:
        # "_cursor" lets BenchMARL's own round-robin writer read this state too: an experiment
        # restores its checkpoint before hetplug_benchmarl.wrap() replaces its buffers (wrap
        # then restores again, into this writer).
        return {"_cursor": 0, "length": self.layout.length.clone()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.layout.reset(state_dict["length"])

    def dumps(self, path) -> None:
        torch.save(self.state_dict(), f"{path}/hetplug_writer.pt")

    def loads(self, path) -> None:
        self.load_state_dict(torch.load(f"{path}/hetplug_writer.pt"))

    def __repr__(self) -> str:
        return f"hetplug.TrajectoryWriter(slots={self.layout.slots}, steps={self.layout.steps})"
