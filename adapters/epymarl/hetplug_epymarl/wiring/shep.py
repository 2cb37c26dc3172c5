"""SHEP's wiring, which serves every plugin implementing ``hetplug_trajectories_collected``
(SHEP's descriptors, intrinsic reward and Group-HER; HetDPS's meta-transitions).

Needs from the host: each inserted ``EpisodeBatch``, and where the agents are:
``hetplug.positions`` and ``hetplug.opponents``, slices of the observations or of the
state (:mod:`hetplug_epymarl.positions`), or a named extractor that reads them from the
environment object (:mod:`hetplug_epymarl.env_fields`). There is no default: SHEP without
``positions`` is refused before training (:mod:`hetplug_epymarl.checks`).

Installs, at ``buffer.insert_episode_batch``:

* the plugins' view of the episodes (:func:`~hetplug_epymarl.episodes.trajectory_batch`
  with positions, and ``alive`` and ``success`` where the environment reports them),
  passed to ``hetplug_trajectories_collected``;
* the plugins' intrinsic rewards, added in place to the episodes' reward (EPyMARL trains
  on what is stored), over valid steps only;
* relabelled copies (Group-HER) as episodes of their own, stored after the originals: the
  source episode with the relabelling's reward added, terminated at the segment's end and
  its later steps unfilled, plus the source's intrinsic reward.
"""

from __future__ import annotations

import torch

import hetplug
from hetplug import PositionSource
from hetplug_epymarl.env_fields import Recorder
from hetplug_epymarl.episodes import trajectory_batch
from hetplug_epymarl.positions import check_source, read_positions


def _expand(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` -> broadcastable against ``like`` (``[B, T, 1]`` or ``[B, T, N]``)."""
    return value.reshape(*value.shape, *([1] * (like.dim() - 2)))


def episode_copy(ep_batch, tb: hetplug.TrajectoryBatch, her: hetplug.TrajectoryBatch):
    """An EpisodeBatch of relabelled copies: the source episodes with the relabelling's
    reward, termination and mask."""
    rows = her.extra["hetplug_row"][:, 0]
    copy = ep_batch[rows.cpu().numpy()]  # fancy indexing: new tensors
    data = copy.data.transition_data
    her_bonus = her.reward - tb.reward[rows]  # [B', T(, N)]: only what relabelling added
    r = data["reward"]
    r += her_bonus.reshape(*r.shape[:2], -1).to(r.device, r.dtype)
    data["terminated"].copy_(her.done.reshape(data["terminated"].shape).to(data["terminated"].dtype))
    data["filled"].copy_(her.mask.reshape(data["filled"].shape).to(data["filled"].dtype))
    return copy


class Collection:
    """``hetplug_trajectories_collected`` for every inserted episode batch."""

    def __init__(self, pm, config: hetplug.HetplugConfig, metrics) -> None:
        self.pm = pm
        self.metrics = metrics  # the session's MetricsLog
        self.positions: PositionSource | None = config.positions
        self.opponents: PositionSource | None = config.opponents
        self.recorder = Recorder(
            *(None if source is None else source.extractor for source in (self.positions, self.opponents))
        )
        self.device = None
        self.n_agents = 0

    def buffer_built(self, buffer, spec: hetplug.HostSpec) -> None:
        """Check the slices against the environment's sizes, before any episode."""
        n_agents = spec.n_agents
        if self.positions is not None and self.positions.extractor is None:
            check_source(self.positions, "positions", buffer.scheme, n_agents, per_agent=True)
        if self.opponents is not None and self.opponents.extractor is None:
            check_source(self.opponents, "opponents", buffer.scheme, n_agents, per_agent=False)
        self.device, self.n_agents = spec.device, n_agents

    def trajectory_batch(self, ep_batch) -> hetplug.TrajectoryBatch:
        """The episodes as plain tensors: positions (and opponents') from their slices or
        their extractor, ``alive`` and ``success`` where the environment reports them."""
        recorded = self.recorder.fields(ep_batch, self.n_agents, self.device)
        fields = {k: recorded[k] for k in ("alive", "success") if k in recorded}
        for name, field, per_agent in (
            ("positions", "positions", True),
            ("opponents", "opponent_positions", False),
        ):
            source = getattr(self, name)
            if source is None:
                continue
            if source.extractor is None:
                fields[field] = read_positions(ep_batch, source, per_agent=per_agent).to(self.device)
                continue
            if field not in recorded:
                raise ValueError(
                    f"hetplug.{name}.extractor={source.extractor!r}: no environment records for these "
                    f"episodes (only episodes the run's runner collected have them)"
                )
            fields[field] = recorded[field]
            if field == "opponent_positions":
                fields["opponent_alive"] = recorded["opponent_alive"]
        return trajectory_batch(ep_batch, self.device, **fields)

    def collected(self, ep_batch) -> tuple[hetplug.TrajectoryBatch, list]:
        """Run the hook; add the intrinsic reward to ``ep_batch`` in place.

        Returns the episodes' batch (reward updated) and the relabelled copies to store
        beside them, as ``[(EpisodeBatch, TrajectoryBatch)]``.
        """
        tb = self.trajectory_batch(ep_batch)
        intrinsic = None
        relabelled = []
        for res in self.pm.hook.hetplug_trajectories_collected(batch=tb):
            if res is None:
                continue
            self.metrics.update(res.metrics)
            if res.intrinsic_reward is not None:
                intrinsic = res.intrinsic_reward if intrinsic is None else intrinsic + res.intrinsic_reward
            if res.extra_trajectories is not None:
                relabelled.append(res.extra_trajectories)
        copies = [(episode_copy(ep_batch, tb, her), her) for her in relabelled]
        if intrinsic is not None:
            bonus = (intrinsic * tb.mask).to(tb.reward.dtype)
            # tb.reward may be a view of the host's reward: build the new one first.
            tb = tb.replace(reward=tb.reward + _expand(bonus, tb.reward))
            reward = ep_batch.data.transition_data["reward"]
            reward += _expand(bonus, reward).to(reward.device, reward.dtype)
            self.metrics.update({"intrinsic_reward": bonus.sum() / tb.mask.sum().clamp_min(1)})
            for copy, her in copies:  # the copies get their source rows' intrinsic reward too
                rows = her.extra["hetplug_row"][:, 0]
                r = copy.data.transition_data["reward"]
                r += _expand(bonus[rows], r).to(r.device, r.dtype)
        return tb, copies
