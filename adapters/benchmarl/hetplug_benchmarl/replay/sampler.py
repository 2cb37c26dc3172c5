"""A TorchRL ``Sampler`` whose draws come from hetplug's prioritiser.

A draw picks trajectory slots by priority (``hetplug_replay_sample``, SHEP eq. 6) and
one valid step inside each (the plugin's choice when it makes one: SHEP draws an episode
of the row, then a step of it; else uniformly), so every step of a trajectory inherits its IS
weight (eq. 7). TD errors come back per step through ``update_priority(index, |TD|)``
into a ``[slots, T]`` table, and the trajectories they touch are re-prioritised from
their whole rows (``hetplug_update_priorities``): steps never evaluated count with the
largest |TD| seen, as PER does for new items. With ``T = 1`` this is plain PER.
"""

from __future__ import annotations

from typing import Any

import pluggy
import torch
from torchrl.data.replay_buffers.samplers import Sampler

from hetplug.state import read_versioned, versioned
from hetplug_benchmarl.replay.layout import TrajectoryLayout

WEIGHT_KEY = "priority_weight"  # what TorchRL 0.11 losses read as IS weights
SLOT_KEY = "hetplug_slot"  # the sampled trajectory slot (also index // T)
STEP_KEY = "hetplug_step"  # the sampled step (also index % T)


def _on(x: torch.Tensor, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``x`` on ``device`` (in ``dtype``), without a dispatch when it already is."""
    if x.device == device and (dtype is None or x.dtype == dtype):
        return x
    return x.to(device, dtype)


class TrajectorySampler(Sampler):
    """Draws ``(slot, step)`` pairs through the group's plugin manager.

    Args:
        pm: the group's plugin manager (a prioritiser registered and configured).
        layout: the storage layout the writer fills.
        n_agents: N; IS weights are written ``[B, N]`` so per-agent losses can use them.
        generator: for the draws (seeded from the experiment's seed).
    """

    def __init__(
        self, pm: pluggy.PluginManager, layout: TrajectoryLayout, n_agents: int, generator=None
    ) -> None:
        super().__init__()
        self.pm = pm
        self.layout = layout
        self.n_agents = n_agents
        self.generator = generator
        self.device = layout.device
        self.td = torch.full((layout.slots, layout.steps), float("nan"), device=self.device)
        # The valid steps of every stored trajectory are those it was added with: a
        # prioritiser that keeps them (``keeps_valid_steps``, e.g. SHEP) gets mask=None.
        impls = pm.hook.hetplug_update_priorities.get_hookimpls()
        self.pass_mask = not all(getattr(impl.plugin, "keeps_valid_steps", False) for impl in impls)
        self.max_td = torch.ones((), device=self.device)

    def extend(self, index: torch.Tensor) -> None:
        slots, _ = self.layout.split(index)
        self.td[slots] = float("nan")  # new trajectories: no TD error seen yet

    def add(self, index: int) -> None:
        raise RuntimeError(
            "hetplug: single-transition add() is not supported; the buffer takes whole batches"
        )

    def sample(self, storage, batch_size: int) -> tuple[torch.Tensor, dict]:
        res = self.pm.hook.hetplug_replay_sample(batch_size=batch_size, generator=self.generator, td_fn=None)
        slots = _on(res.indices, self.device)
        if res.steps is not None:  # the plugin chose the step (SHEP: a step of the drawn episode)
            step = _on(res.steps, self.device)
        else:
            u = torch.rand(batch_size, device=self.device, generator=self.generator)
            length = self.layout.steps if self.layout.full else self.layout.length[slots]
            step = (u * length).long().clamp_max(self.layout.steps - 1)  # a valid step
        weights = _on(res.weights, self.device, torch.float32)
        info = {
            WEIGHT_KEY: weights[:, None].expand(batch_size, self.n_agents).contiguous(),
            SLOT_KEY: slots,
            STEP_KEY: step,
        }
        return slots * self.layout.steps + step, info

    def update_priority(self, index: torch.Tensor, priority: torch.Tensor, *, storage=None) -> torch.Tensor:
        """``|TD|`` (or on-policy ``|advantage|``) of the transitions at ``index`` re-prioritises
        their trajectories; returns the new trajectory priorities."""
        slots, step = self.layout.split(index)
        td = _on(priority.detach(), self.device, torch.float32).abs().reshape(-1)
        self.td[slots, step] = td
        self.max_td = torch.maximum(self.max_td, td.max())
        rows = self.td.index_select(0, slots)
        rows = rows.masked_fill_(torch.isnan(rows), self.max_td)
        return self.pm.hook.hetplug_update_priorities(
            indices=slots, td_error=rows, mask=self.layout.valid(slots) if self.pass_mask else None
        )

    def state_dict(self) -> dict[str, Any]:
        return versioned({"td": self.td.clone(), "max_td": self.max_td.clone()})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = read_versioned(state_dict, "hetplug TrajectorySampler")
        if "index" in state:
            raise ValueError(
                "this checkpoint's replay buffer was saved by hetplug before its storage layout was "
                "fixed (slot * T + step); it cannot be restored by this version"
            )
        if tuple(state["td"].shape) != tuple(self.td.shape):
            raise ValueError(
                f"saved sampler table has shape {tuple(state['td'].shape)}, this buffer's is "
                f"{tuple(self.td.shape)} (trajectory slots, steps)"
            )
        self.td.copy_(state["td"])
        self.max_td = state["max_td"].to(self.device).clone()

    def _empty(self) -> None:
        self.td.fill_(float("nan"))

    def dumps(self, path) -> None:
        torch.save(self.state_dict(), f"{path}/hetplug_sampler.pt")

    def loads(self, path) -> None:
        self.load_state_dict(torch.load(f"{path}/hetplug_sampler.pt"))

    def __repr__(self) -> str:
        return f"hetplug.TrajectorySampler(slots={self.layout.slots}, steps={self.layout.steps})"
