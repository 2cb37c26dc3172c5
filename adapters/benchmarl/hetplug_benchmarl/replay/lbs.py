"""LBS inside a BenchMARL group: Large Batch Sharing between the group's agents.

An item is one agent's part of one stored transition: ``(storage index, agent)``. The
``lbs`` plugin's slots are the storage's indices (both rings start at 0 and advance by the
same counts). For learner i, row b of its minibatch is agent ``sources[i, b]``'s part of
transition ``indices[i, b]``: :func:`mixed` lays the items out so that agent column i of
the sampled TensorDict holds learner i's item (the group's per-agent entries are
gathered; the rest comes from column 0's transition). One call of the group's loss then
evaluates every learner on its own column, which is also how ``td_fn`` scores the whole
large batch. IS weights go to the per-agent losses as ``priority_weight`` ``[B, N]``.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.data import TensorDictReplayBuffer

import hetplug
from hetplug_benchmarl.replay.sampler import WEIGHT_KEY


def mixed(storage, group: str, slot: torch.Tensor, agent: torch.Tensor) -> TensorDictBase:
    """``[R, ...]`` transitions whose ``group`` entries in column i come from agent
    ``agent[r, i]`` of transition ``slot[r, i]`` (both ``[R, N]``)."""
    R, N = slot.shape
    flat = storage.get(slot.reshape(-1))  # [R*N] whole transitions
    rows = torch.arange(R * N, device=slot.device)
    col = agent.reshape(-1).to(slot.device)
    out = storage.get(slot[:, 0])  # [R]: non-group entries from column 0's transition
    for key in (group, ("next", group)):
        if key in flat.keys(include_nested=True):
            out.set(key, flat.get(key)[rows, col].reshape(R, N))
    return out


class LBSReplayBuffer(TensorDictReplayBuffer):
    """BenchMARL's group buffer with LBS sampling (independent learners of one group).

    Args:
        pm: the group's plugin manager (an experience-sharing prioritiser configured with
            the storage's capacity).
        loss: the group's loss; called without gradient to score candidates.
        group: the agent group.
        n_agents: the group's agents (its learners).
        td_keys / td_squared: where the loss writes TD errors, as for PER.
        generator: for the draws.
    """

    def __init__(
        self,
        *,
        pm,
        loss,
        group: str,
        n_agents: int,
        td_keys: tuple,
        td_squared: bool,
        generator=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._hetplug = (pm, loss, group, td_keys, td_squared)
        self.n_agents = n_agents
        self.generator = generator

    def extend(self, data: TensorDictBase, *args, **kwargs):
        pm = self._hetplug[0]
        n = data.shape[0]
        batch = hetplug.TrajectoryBatch(
            reward=torch.zeros(n, 1, device=data.device),
            mask=torch.ones(n, 1, dtype=torch.bool, device=data.device),
        )
        slots = pm.hook.hetplug_replay_add(batch=batch)
        index = super().extend(data, *args, **kwargs)
        if not torch.equal(torch.as_tensor(index).reshape(-1).cpu(), slots.cpu()):  # once per iteration
            raise RuntimeError("hetplug lbs: the storage and the LBS ring are out of step")
        return index

    def _td(self, data: TensorDictBase) -> torch.Tensor:
        """``[R, N]`` |TD| the loss writes for every agent column of ``data``."""
        _, loss, _, td_keys, squared = self._hetplug
        with torch.no_grad():
            loss(data)
        keys = data.keys(include_nested=True)
        key = next((k for k in td_keys if k in keys), None)
        if key is None:
            raise KeyError(f"hetplug lbs: the loss wrote no TD error under any of {td_keys}")
        td = data.get(key).detach().reshape(data.shape[0], -1).abs()
        return td.sqrt() if squared else td

    def sample(self, batch_size: int | None = None, return_info: bool = False):
        pm, _, group, _, _ = self._hetplug
        B = batch_size or self._batch_size
        n = self.n_agents

        def td_fn(sources: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
            K = sources.shape[0]
            cand = mixed(
                self._storage, group, slots.unsqueeze(1).expand(K, n), sources.unsqueeze(1).expand(K, n)
            )
            return self._td(cand).T  # [N, K]: learner i's |TD| on candidate j

        res = pm.hook.hetplug_replay_sample(batch_size=B, generator=self.generator, td_fn=td_fn)
        data = mixed(self._storage, group, res.indices.T, res.sources.T)  # rows b, columns i
        data.set(WEIGHT_KEY, res.weights.T.contiguous().to(data.device))
        if self._transform is not None and len(self._transform):
            data = self._transform(data)
        return (data, {}) if return_info else data

    def update_tensordict_priority(self, data: TensorDictBase) -> None:
        return  # LBS re-scores the large batch at every draw
