"""LBS's wiring: Large Batch Sharing between independent Q-learners (IQL, iql_ns), for any
prioritiser whose ``hetplug_replay_sample`` takes ``td_fn``.

Needs from the host: independent Q-learners (``learner: q_learner``, no mixer), and all
that prioritised replay needs (:mod:`~hetplug_epymarl.wiring.per`: storage at the
plugin's slots is the same).

An item is one agent's experience in one stored episode: ``(slot, agent)``. Learner i's
minibatch row b is agent ``sources[i, b]``'s experience in episode ``indices[i, b]``, and
it is fed to learner i as if it were its own. Installs:

* mixed-column batches (:func:`mixed_batch`): in agent column i, that agent's
  observations, actions and available actions, while rewards (that agent's own, when
  rewards are per agent), termination and masks travel per column beside the batch;
* the ``td_fn`` (:func:`make_td_fn`): one forward of the (non-)shared mac evaluates every
  learner on its own column, which scores all ``K = N * B`` candidates for every learner;
* the update: the weighted Q update with one weight per (row, column).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

from hetplug_epymarl.updates import q_td_errors, weighted_q_update
from hetplug_epymarl.wiring.per import PrioritisedReplay


def _columns(value: torch.Tensor, slot: torch.Tensor, agent: torch.Tensor) -> torch.Tensor:
    """``[S, T, 1]`` team or ``[S, T, N]`` per-agent step data (EPyMARL's
    ``common_reward=False`` rewards) -> ``[R, T, N]``: column i from episode ``slot[r, i]``,
    agent ``agent[r, i]``'s own entry when the data is per agent."""
    if value.shape[-1] == 1:
        return value[slot].squeeze(-1).transpose(1, 2)
    return value[slot, :, agent].transpose(1, 2)


def mixed_batch(buffer, slot: torch.Tensor, agent: torch.Tensor):
    """An EpisodeBatch of ``R`` rows whose agent column i holds agent ``agent[r, i]``'s data
    of stored episode ``slot[r, i]`` (both ``[R, N]``), and the per-column step data
    ``(reward, terminated, filled)``, each ``[R, T, N]``."""
    data = buffer.data
    slot = slot.to(torch.long).cpu()
    agent = agent.to(torch.long).cpu()
    transition = {}
    for key, value in data.transition_data.items():
        if "group" in buffer.scheme.get(key, {}):  # [S, T, N, ...] -> [R, T, N, ...]
            transition[key] = value[slot, :, agent].transpose(1, 2).contiguous()
        else:  # [S, T, ...]: the episode of column 0 (IQL reads no state)
            transition[key] = value[slot[:, 0]].clone()
    columns = {k: _columns(data.transition_data[k], slot, agent) for k in ("reward", "terminated", "filled")}
    # "filled" of the batch: a step is there if any column has it (the host truncates by it)
    transition["filled"] = columns["filled"].amax(-1, keepdim=True).to(data.transition_data["filled"].dtype)
    episode = {k: v[slot[:, 0]].clone() for k, v in data.episode_data.items()}
    cls = type(buffer[0:1])  # the host's EpisodeBatch
    batch = cls(buffer.scheme, buffer.groups, slot.shape[0], buffer.max_seq_length,
                data=SimpleNamespace(transition_data=transition, episode_data=episode),
                device=buffer.device)  # fmt: skip
    return batch, (columns["reward"], columns["terminated"], columns["filled"])


def _trim(batch, steps):
    """Drop the time steps no column has (as the host does with ``max_t_filled``)."""
    t = int(batch.max_t_filled())
    return batch[:, :t], tuple(s[:, :t] for s in steps)


def make_td_fn(buffer, learner):
    """``td_fn(sources [K], slots [K]) -> [N, K]``: every learner's mean |TD| over the valid
    steps of each candidate (agent ``sources[j]`` in episode ``slots[j]``)."""

    def td_fn(sources: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        n = buffer.groups["agents"]
        batch, steps = mixed_batch(
            buffer, slots.unsqueeze(1).expand(-1, n), sources.unsqueeze(1).expand(-1, n)
        )
        batch, steps = _trim(batch, steps)
        device = learner.args.device
        if batch.device != device:
            batch.to(device)
            steps = tuple(s.to(device) for s in steps)
        td, mask = q_td_errors(learner, batch, steps)  # [K, T-1, N]
        return (td.abs().sum(1) / mask.sum(1).clamp_min(1)).T

    return td_fn


class SharedReplay(PrioritisedReplay):
    """Prioritised replay whose samples are shared between the agents' learners."""

    def __init__(self, pm, name: str, seed: int) -> None:
        super().__init__(pm, name, seed)
        self.learner = None
        self.steps: tuple[torch.Tensor, ...] | None = None  # per-column (reward, terminated, filled)

    def check(self, args: Any, host) -> None:
        super().check(args, host)
        mixer = getattr(args, "mixer", None)
        if host.learner_kind(args) != "q" or mixer is not None:
            raise ValueError(
                f"hetplug.plugins: {self.name!r} shares experience between independent Q-learners "
                f"(iql, iql_ns: learner q_learner, no mixer); this config has "
                f"learner={getattr(args, 'learner', None)!r}, mixer={mixer!r}"
            )

    def learner_built(self, learner, host) -> None:
        super().learner_built(learner, host)
        self.learner = learner

    def sample(self, buffer, batch_size: int):
        """Every learner's B items (one large batch, TD-selected), as one mixed batch."""
        self.check_stored(buffer, batch_size)
        res = self.pm.hook.hetplug_replay_sample(
            batch_size=batch_size, generator=self.generator, td_fn=make_td_fn(buffer, self.learner)
        )
        batch, self.steps = mixed_batch(buffer, res.indices.T, res.sources.T)  # rows b, columns i
        self.last_sample = res
        return batch

    def train(self, learner, batch, t_env: int) -> bool:
        """The weighted Q update with weights ``[B, N]`` and per-column step data."""
        sample = self.take_sample(batch.batch_size)
        if sample is None:
            return False
        T = batch.max_seq_length
        steps = tuple(s[:, :T].to(batch.device) for s in self.steps)
        weighted_q_update(learner, batch, sample.weights.T, t_env, steps)
        return True
