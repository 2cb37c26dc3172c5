"""BenchMARL collected batch (a TensorDict ``[B envs, T steps]``) -> hetplug's plain
:class:`~hetplug.TrajectoryBatch` for one agent group. Each row is one vectorised
environment's segment of the iteration's rollout."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase

import hetplug
from hetplug.config import PositionSource
from hetplug.shep.episodes import episode_index
from hetplug_benchmarl.positions import read_positions


def reward_key(keys, group: str) -> tuple[str, ...]:
    """Where the group's reward is: per agent ``("next", group, "reward")``, else the team's."""
    key = ("next", group, "reward")
    return key if key in keys else ("next", "reward")


def group_reward(batch: TensorDictBase, group: str) -> torch.Tensor:
    """``[B, T, N]`` per-agent rewards, or ``[B, T]`` for a task with one shared reward."""
    return batch.get(reward_key(batch.keys(include_nested=True), group)).squeeze(-1)


def agent_flags(batch: TensorDictBase, group: str, name: str = "alive") -> torch.Tensor | None:
    """``[B, T, N]`` bool per-agent entry ``(group, name)`` (``[N]`` or ``[N, 1]`` per step),
    or None when the environment writes none."""
    key = (group, name)
    if key not in batch.keys(include_nested=True):
        return None
    value = batch.get(key)
    return (value.squeeze(-1) if value.dim() == 4 else value).bool()


#: the environment's per-step win flag, True at the last step of a won episode (magent/battle)
SUCCESS_KEY = ("next", "battle_won")


def episode_success(batch: TensorDictBase, done: torch.Tensor) -> torch.Tensor | None:
    """``[B, T]`` bool: whether the episode holding each step was won, from the win flag at
    its last step (an episode still running at the row's end: False), or None when the
    environment writes no win flag. A row holds several episodes, so one flag per row
    would not do."""
    if SUCCESS_KEY not in batch.keys(include_nested=True):
        return None
    won = batch.get(SUCCESS_KEY).reshape(done.shape).bool()
    episode = episode_index(done, done.shape, done.device)
    per_episode = torch.zeros(done.shape, dtype=torch.bool, device=done.device)
    per_episode.scatter_reduce_(-1, episode, won, reduce="amax")
    return per_episode.gather(-1, episode)


def discrete_actions(actions: torch.Tensor) -> torch.Tensor:
    """``[B, T, N]`` int64 from an index (``[B, T, N]`` or ``[B, T, N, 1]``) or one-hot."""
    if actions.dim() == 4 and actions.shape[-1] == 1:  # [B, T, N, 1] index
        actions = actions.squeeze(-1)
    elif actions.dim() == 4:  # one-hot
        actions = actions.argmax(-1)
    return actions.long()


def to_trajectory_batch(
    batch: TensorDictBase,
    group: str,
    discrete: bool,
    positions: PositionSource | None = None,
    opponents: PositionSource | None = None,
) -> hetplug.TrajectoryBatch:
    """Plain tensors for ``group``: reward, done, mask, obs, actions, and positions (and
    opponent positions) when a source is given. Per-agent ``alive`` entries, of the group
    and of the opponents' group, fill ``alive`` / ``opponent_alive`` when the environment
    writes them (e.g. ``magent/battle``), the opponents' ``action`` fills
    ``opponent_actions`` for discrete actions, and a win flag fills ``success`` per step
    (:func:`episode_success`). Nothing is copied to the host."""
    B, T = batch.shape[:2]
    done_key = ("next", group, "done")
    if done_key in batch.keys(include_nested=True):
        done = batch.get(done_key).squeeze(-1).any(-1)
    else:
        done = batch.get(("next", "done")).squeeze(-1)
    actions = batch.get((group, "action"))
    if discrete:
        actions = discrete_actions(actions)
    opponent_actions = None
    if opponents is not None and discrete and (opponents.group, "action") in batch.keys(include_nested=True):
        opponent_actions = discrete_actions(batch.get((opponents.group, "action")))
    return hetplug.TrajectoryBatch(
        reward=group_reward(batch, group),
        mask=torch.ones(B, T, dtype=torch.bool, device=batch.device),
        done=done,
        obs=batch.get((group, "observation")),
        actions=actions,
        positions=None if positions is None else read_positions(batch, group, positions),
        alive=agent_flags(batch, group),
        opponent_positions=None if opponents is None else read_positions(batch, opponents.group, opponents),
        opponent_alive=None if opponents is None else agent_flags(batch, opponents.group),
        opponent_actions=opponent_actions,
        success=episode_success(batch, done),
        # the source row travels with relabelled copies (Group-HER)
        extra={"hetplug_row": torch.arange(B, device=batch.device).unsqueeze(1).expand(B, T)},
    )
