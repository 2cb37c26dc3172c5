"""BenchMARL collected batch (a TensorDict ``[B envs, T steps]``) -> hetplug's plain
:class:`~hetplug.TrajectoryBatch` for one agent group. Each row is one vectorised
environment's segment of the iteration's rollout."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase

import hetplug
from hetplug.config import PositionSource
from hetplug_benchmarl.positions import read_positions


def reward_key(keys, group: str) -> tuple[str, ...]:
    """Where the group's reward is: per agent ``("next", group, "reward")``, else the team's."""
    key = ("next", group, "reward")
    return key if key in keys else ("next", "reward")


def group_reward(batch: TensorDictBase, group: str) -> torch.Tensor:
    """``[B, T, N]`` per-agent rewards, or ``[B, T]`` for a task with one shared reward."""
    return batch.get(reward_key(batch.keys(include_nested=True), group)).squeeze(-1)


def to_trajectory_batch(
    batch: TensorDictBase,
    group: str,
    discrete: bool,
    positions: PositionSource | None = None,
    opponents: PositionSource | None = None,
) -> hetplug.TrajectoryBatch:
    """Plain tensors for ``group``: reward, done, mask, obs, actions, and positions (and
    opponent positions) when a source is given. Nothing is copied to the host."""
    B, T = batch.shape[:2]
    done_key = ("next", group, "done")
    if done_key in batch.keys(include_nested=True):
        done = batch.get(done_key).squeeze(-1).any(-1)
    else:
        done = batch.get(("next", "done")).squeeze(-1)
    actions = batch.get((group, "action"))
    if discrete:
        if actions.dim() == 4 and actions.shape[-1] == 1:  # [B, T, N, 1] index
            actions = actions.squeeze(-1)
        elif actions.dim() == 4:  # one-hot
            actions = actions.argmax(-1)
        actions = actions.long()
    return hetplug.TrajectoryBatch(
        reward=group_reward(batch, group),
        mask=torch.ones(B, T, dtype=torch.bool, device=batch.device),
        done=done,
        obs=batch.get((group, "observation")),
        actions=actions,
        positions=None if positions is None else read_positions(batch, group, positions),
        opponent_positions=None if opponents is None else read_positions(batch, opponents.group, opponents),
        # the source row travels with relabelled copies (Group-HER)
        extra={"hetplug_row": torch.arange(B, device=batch.device).unsqueeze(1).expand(B, T)},
    )
