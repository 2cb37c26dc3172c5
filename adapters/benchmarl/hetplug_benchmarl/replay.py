"""hetplug's prioritisers inside a TorchRL replay buffer.

BenchMARL stores transitions (its batch reshaped to ``[B * T]``); SHEP prioritises
trajectories. :class:`TrajectorySampler` keeps both views: hetplug's sampler holds one
priority per trajectory slot (one row of the collected batch), and a ``[slots, T]`` table
maps each (trajectory, step) to the transition's storage index. A draw picks
trajectories by priority (eq. 6) and one step uniformly inside each, so every step of a
trajectory inherits its IS weight (eq. 7). TD errors flow back per step into a
``[slots, T]`` table; the trajectory's priority is recomputed from the whole row (steps
never evaluated count with the largest |TD| seen, as PER does for new items).

With ``T = 1`` (``per`` on transitions) this is plain PER.
"""

from __future__ import annotations

from typing import Any

import pluggy
import torch
from tensordict import TensorDictBase
from torchrl.data import TensorDictReplayBuffer
from torchrl.data.replay_buffers.samplers import Sampler
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.multiagent.qmixer import QMixerLoss
from torchrl.objectives.utils import distance_loss

WEIGHT_KEY = "priority_weight"  # what TorchRL 0.11 losses read as IS weights
SLOT_KEY = "hetplug_slot"
STEP_KEY = "hetplug_step"


class TrajectorySampler(Sampler):
    """A TorchRL ``Sampler`` that asks a hetplug plugin manager for trajectory slots.

    Args:
        pm: the group's plugin manager (with ``per`` or ``shep`` registered and configured).
        steps: T, the steps of each stored trajectory.
        capacity: trajectory slots (the storage's transitions / T).
        n_agents: N; IS weights are written ``[B, N]`` so per-agent losses can use them.
        device: where the tables live (the buffer storage's device).
    """

    def __init__(self, pm: pluggy.PluginManager, steps: int, capacity: int, n_agents: int, device) -> None:
        super().__init__()
        self.pm = pm
        self.steps = steps
        self.n_agents = n_agents
        self.device = torch.device(device)
        self.index = torch.full((capacity, steps), -1, dtype=torch.long, device=self.device)
        self.td = torch.full((capacity, steps), float("nan"), device=self.device)
        self.max_td = torch.ones((), device=self.device)
        self.generator: torch.Generator | None = None
        self._pending: torch.Tensor | None = None
        self._pending_length: torch.Tensor | None = None
        self._last_rows: torch.Tensor | None = None
        #: valid steps of each slot (T, or fewer for a Group-HER copy cut at its segment end)
        self.length = torch.full((capacity,), steps, dtype=torch.long, device=self.device)
        #: Group-HER copies waiting for the buffer's extend: (slots, transitions, lengths)
        self.extra: list[tuple[torch.Tensor, TensorDictBase, torch.Tensor]] = []

    # --- writes ----------------------------------------------------------------
    def stage(self, slots: torch.Tensor, lengths: torch.Tensor | None = None) -> None:
        """The slots hetplug gave the next batch (``hetplug_replay_add``), row order, and
        optionally each row's valid steps (Group-HER copies end at their segment)."""
        self._pending = slots.to(self.device)
        self._pending_length = None if lengths is None else lengths.to(self.device, torch.long)

    def extend(self, index: torch.Tensor) -> None:
        if self._pending is None:
            raise RuntimeError(
                "hetplug: the replay buffer was extended with a batch the hetplug callback did not "
                "see in on_batch_collected; add data only through the experiment's collection loop"
            )
        index = torch.as_tensor(index, device=self.device).reshape(-1)
        rows = self._pending
        if index.numel() != rows.numel() * self.steps:
            raise RuntimeError(
                f"hetplug: extended {index.numel()} transitions, expected {rows.numel()} trajectories "
                f"x {self.steps} steps"
            )
        self.index[rows] = index.view(rows.numel(), self.steps)
        self.td[rows] = float("nan")
        self.length[rows] = self.steps if self._pending_length is None else self._pending_length
        self._last_rows = rows
        self._pending = None

    def add(self, index: int) -> None:
        raise RuntimeError(
            "hetplug: single-transition add() is not supported; the buffer takes whole batches"
        )

    # --- reads -----------------------------------------------------------------
    def sample(self, storage, batch_size: int) -> tuple[torch.Tensor, dict]:
        res = self.pm.hook.hetplug_replay_sample(batch_size=batch_size, generator=self.generator, td_fn=None)
        slots = res.indices.to(self.device)
        u = torch.rand(batch_size, device=self.device, generator=self.generator)
        step = (u * self.length[slots]).long().clamp_max(self.steps - 1)  # uniform over valid steps
        weights = res.weights.to(self.device).float()
        info = {
            WEIGHT_KEY: weights[:, None].expand(batch_size, self.n_agents).contiguous(),
            SLOT_KEY: slots,
            STEP_KEY: step,
        }
        return self.index[slots, step], info

    def record_rows(self, td: torch.Tensor) -> torch.Tensor:
        """On-policy: ``|TD| [rows, T]`` of the batch just extended (``|advantage|`` from the
        critic, computed by BenchMARL's ``process_batch``) sets those trajectories' priorities."""
        slots = self._last_rows
        td = td.detach().to(self.device, torch.float32).abs().reshape(slots.numel(), self.steps)
        self.td[slots] = td
        self.max_td = torch.maximum(self.max_td, td.max())
        return self.pm.hook.hetplug_update_priorities(indices=slots, td_error=td, mask=self._valid(slots))

    def _valid(self, slots: torch.Tensor) -> torch.Tensor:
        """``[len(slots), T]`` True on each slot's valid steps."""
        return torch.arange(self.steps, device=self.device) < self.length[slots].unsqueeze(1)

    def record_td(self, slots: torch.Tensor, step: torch.Tensor, td: torch.Tensor) -> torch.Tensor:
        """Store ``|TD|`` of the sampled steps and re-prioritise their trajectories."""
        slots, step = slots.to(self.device), step.to(self.device)
        td = td.detach().to(self.device, torch.float32).abs()
        self.td[slots, step] = td
        self.max_td = torch.maximum(self.max_td, td.max())
        rows = self.td[slots]
        rows = torch.where(torch.isnan(rows), self.max_td, rows)
        return self.pm.hook.hetplug_update_priorities(indices=slots, td_error=rows, mask=self._valid(slots))

    # --- TorchRL bookkeeping ------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "index": self.index.clone(),
            "td": self.td.clone(),
            "max_td": self.max_td.clone(),
            "length": self.length.clone(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.index.copy_(state_dict["index"])
        self.td.copy_(state_dict["td"])
        self.max_td.copy_(state_dict["max_td"])
        self.length.copy_(state_dict["length"])

    def _empty(self) -> None:
        self.index.fill_(-1)
        self.td.fill_(float("nan"))
        self.length.fill_(self.steps)

    def dumps(self, path) -> None:
        torch.save(self.state_dict(), f"{path}/hetplug_sampler.pt")

    def loads(self, path) -> None:
        self.load_state_dict(torch.load(f"{path}/hetplug_sampler.pt"))

    def __repr__(self) -> str:
        return f"hetplug.TrajectorySampler(steps={self.steps}, slots={self.index.shape[0]})"


class HetplugReplayBuffer(TensorDictReplayBuffer):
    """BenchMARL's buffer with a :class:`TrajectorySampler` and a priority update that
    reads the TD error wherever the group's loss wrote it.

    Args:
        td_keys: where the loss writes TD errors, tried in order (``(group, "td_error")``
            for per-agent losses, ``"td_error"`` for QMIX/VDN's mixer loss).
        td_squared: the loss writes ``(Q - y)^2`` (DQN, DDPG) rather than ``|Q - y|``
            (SAC, hetplug's weighted mixer loss); the square root is taken.
    """

    def __init__(
        self,
        *,
        td_keys: tuple,
        td_squared: bool,
        advantage_key=None,
        fresh_each_rollout: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self._hetplug_td_keys = td_keys
        self._hetplug_td_squared = td_squared
        self._hetplug_advantage_key = advantage_key
        #: on-policy with Group-HER copies and a window of 1: start each rollout empty
        self._hetplug_fresh = fresh_each_rollout

    def extend(self, data: TensorDictBase, *args, **kwargs):
        if self._hetplug_fresh:
            self.empty()
        index = self._extend_rows(data, *args, **kwargs)
        sampler = self._sampler
        extra, sampler.extra = sampler.extra, []
        for slots, copies, lengths in extra:  # SHEP's Group-HER copies, after the originals
            sampler.stage(slots, lengths)
            self._extend_rows(copies, *args, **kwargs)
        return index

    def _extend_rows(self, data: TensorDictBase, *args, **kwargs):
        index = super().extend(data, *args, **kwargs)
        if self._hetplug_advantage_key is not None:  # on-policy: priorities from |advantage|
            adv = data.get(self._hetplug_advantage_key).detach()
            self._sampler.record_rows(adv.reshape(adv.shape[0], -1).abs().mean(-1))
        return index

    def update_tensordict_priority(self, data: TensorDictBase) -> None:
        if self._hetplug_advantage_key is not None:
            return  # on-policy: set once per rollout in extend
        keys = data.keys(include_nested=True)
        for key in self._hetplug_td_keys:
            if key in keys:
                td = data.get(key)
                break
        else:
            raise KeyError(f"hetplug: the loss wrote no TD error under any of {self._hetplug_td_keys}")
        td = td.detach().reshape(td.shape[0], -1).abs()
        if self._hetplug_td_squared:
            td = td.sqrt()
        self._sampler.record_td(data.get(SLOT_KEY), data.get(STEP_KEY), td.mean(-1))


class WeightedQMixerLoss(QMixerLoss):
    """QMIX/VDN's mixer loss with importance weights (TorchRL's ignores them).

    Same TD target as :class:`~torchrl.objectives.multiagent.QMixerLoss`; the per-sample
    loss is averaged with the IS weights (self-normalised, as TorchRL's ``_reduce`` does
    for its other losses), and ``|Q_tot - y|`` is written as the TD error.
    """

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        from tensordict import TensorDict

        work = tensordict.clone(False)
        with self.local_value_network_params.to_module(self.local_value_network):
            self.local_value_network(work)
        q = work.get(self.tensor_keys.action_value)  # [B, N, A]
        action = tensordict.get(self.tensor_keys.action)
        if self.action_space == "categorical":
            chosen = q.gather(-1, action if action.shape == q.shape else action.unsqueeze(-1))
        else:
            chosen = (q * action.float()).sum(-1, keepdim=True)
        work.set(self.tensor_keys.local_value, chosen)  # [B, N, 1]
        with self.mixer_network_params.to_module(self.mixer_network):
            self.mixer_network(work)
        q_tot = work.get(self.tensor_keys.global_value).squeeze(-1)
        target = self.value_estimator.value_estimate(work, target_params=self._cached_target_params).squeeze(
            -1
        )
        tensordict.set(self.tensor_keys.priority, (q_tot - target).detach().abs().unsqueeze(-1), inplace=True)
        per_sample = distance_loss(q_tot, target, self.loss_function).reshape(q_tot.shape[0], -1).mean(-1)
        weights = tensordict.get(WEIGHT_KEY, None)
        if weights is None:
            loss = per_sample.mean()
        else:
            w = weights.reshape(weights.shape[0], -1)[:, 0].to(per_sample.dtype)
            loss = (per_sample * w).sum() / w.sum()
        return TensorDict({"loss": loss}, [])


class WeightedClipPPOLoss(ClipPPOLoss):
    """TorchRL's clipped PPO loss with importance weights (TorchRL's ignores them).

    The loss terms are computed per sample and agent (``reduction="none"``) and averaged
    with the ``[B, N]`` IS weights, ``mean(w * l)``; with all weights 1 it is the mean
    TorchRL takes.
    """

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        weights = tensordict.get(WEIGHT_KEY, None)
        if weights is None:
            return super().forward(tensordict)
        reduction, self.reduction = self.reduction, "none"
        try:
            out = super().forward(tensordict)
        finally:
            self.reduction = reduction
        for name in [k for k in out.keys() if k.startswith("loss_")]:
            value = out.get(name)
            w = weights.to(value.dtype)
            if value.dim() < w.dim() or tuple(value.shape[: w.dim()]) != tuple(w.shape):
                raise ValueError(
                    f"hetplug: PPO loss term {name} has shape {tuple(value.shape)}, cannot apply "
                    f"IS weights of shape {tuple(w.shape)}"
                )
            w = w.reshape(*w.shape, *([1] * (value.dim() - w.dim())))
            out.set(name, (value * w).mean())
        return out
