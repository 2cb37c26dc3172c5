"""BenchMARL collected batch (a TensorDict ``[B envs, T steps]``) -> hetplug's plain
:class:`~hetplug.TrajectoryBatch`. Each row is one vectorised environment's segment of
the iteration's rollout, so a "trajectory" for SHEP is that segment (episodes that reset
inside it simply continue in the next steps, as in the collector's own batch)."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase

import hetplug
from hetplug_benchmarl.options import AdapterOptions, PositionSource


def _positions(batch: TensorDictBase, group: str, source: PositionSource) -> torch.Tensor:
    value = batch.get((group, *source.key))
    start, stop = source.slice
    return value[..., start:stop].float()


def check_position_source(spec, group: str, source: PositionSource, field: str) -> None:
    """Fail at wrap time when the configured entry or slice does not exist in ``spec``
    (the experiment's observation spec, or its full spec for other keys)."""
    try:
        leaf = spec[(group, *source.key)]
    except KeyError:
        raise ValueError(
            f"{field}.key={list(source.key)!r}: group {group!r} has no such entry; "
            f"it has {sorted(str(k) for k in spec[group].keys())}"
        ) from None
    width = leaf.shape[-1]
    if source.slice[1] > width:
        raise ValueError(
            f"{field}.slice={list(source.slice)!r} is out of range: {group}/{'/'.join(source.key)} "
            f"has {width} features"
        )


def group_reward(batch: TensorDictBase, group: str) -> torch.Tensor:
    """``[B, T, N]`` per-agent rewards, or ``[B, T]`` for a task with one shared reward."""
    key = ("next", group, "reward")
    if key in batch.keys(include_nested=True):
        return batch.get(key).squeeze(-1)
    return batch.get(("next", "reward")).squeeze(-1)


def to_trajectory_batch(
    batch: TensorDictBase, group: str, options: AdapterOptions, discrete: bool
) -> hetplug.TrajectoryBatch:
    """Plain tensors for ``group``: reward, done, mask, obs, actions, positions (and
    opponent positions when configured). Nothing is copied to the host."""
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
    opponents = None
    if options.opponents is not None:
        opponents = _positions(batch, options.opponents.group, options.opponents)
    return hetplug.TrajectoryBatch(
        reward=group_reward(batch, group),
        mask=torch.ones(B, T, dtype=torch.bool, device=batch.device),
        done=done,
        obs=batch.get((group, "observation")),
        actions=actions,
        positions=_positions(batch, group, options.positions),
        opponent_positions=opponents,
        # the source row travels with SHEP's Group-HER copies
        extra={"hetplug_row": torch.arange(B, device=batch.device).unsqueeze(1).expand(B, T)},
    )
