"""Group Hindsight Experience Replay (SHEP end of section 4.3, Algorithm 1 lines 12-15).

A step qualifies when the group is cohesive (I(t) > tau_th) or its advantage is rising
(Delta delta(t) > 0). A *segment* is a run of ``min_length`` qualifying valid steps inside
one episode. Within each episode the segment with the largest gain in the advantage,
delta(end) - delta(the step before it), is the candidate ("moments of situational
reversal"); episodes are ranked by that gain and the best ones are copied. A copy is the
episode alone, moved to the start of its row, relabelled with the virtual success reward;
nothing of another episode, nor past the episode's end, enters it. The originals are
never altered: the copies are new tensors.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from hetplug.types import TrajectoryBatch


class Segments(NamedTuple):
    """One candidate per episode holding a segment, ``[K]`` each."""

    row: torch.Tensor  # the batch row
    start: torch.Tensor  # the episode's first step in the row
    end: torch.Tensor  # the segment's last step
    episode_end: torch.Tensor  # the episode's last valid step
    gain: torch.Tensor  # delta(end) - delta(the step before the segment)


def find_segments(
    qualifies: torch.Tensor,
    mask: torch.Tensor,
    min_length: int,
    start: torch.Tensor,
    delta: torch.Tensor,
    length: torch.Tensor,
) -> Segments:
    """The best segment of every episode that has one (one host sync, to count them).

    Args:
        qualifies: ``[B, T]`` bool, the steps that qualify.
        mask: ``[B, T]`` bool valid steps.
        min_length: steps in a segment.
        start: ``[B, T]`` each step's episode start (:func:`~hetplug.shep.episodes.episode_start`).
        delta: ``[B, T]`` the advantage delta(t) of eq. (4).
        length: ``[B, T]`` each step's episode length in valid steps.
    """
    q = qualifies & mask
    B, T = q.shape
    steps = torch.arange(T, device=q.device).expand_as(q)
    # The run of qualifying steps ending at t, not reaching back past its episode's start.
    breaks = torch.where(~q, steps, start - 1)
    run = steps - breaks.cummax(-1).values
    ends = q & (run >= min_length)
    first = (steps - min_length).clamp_min(0)
    before = torch.maximum(first, start)  # the step before the segment, or its episode's first
    gain = delta - delta.gather(-1, before)
    score = torch.where(ends, gain, torch.full_like(gain, -torch.inf))
    key = torch.arange(B, device=q.device).unsqueeze(1) * T + start  # one key per episode
    best = torch.full((B * T,), -torch.inf, dtype=score.dtype, device=q.device)
    best.scatter_reduce_(0, key.reshape(-1), score.reshape(-1), reduce="amax")
    is_best = ends & (score == best[key])
    first_best = torch.full((B * T,), T, dtype=torch.long, device=q.device)
    first_best.scatter_reduce_(0, key.reshape(-1), torch.where(is_best, steps, T).reshape(-1), reduce="amin")
    found = (first_best < T).nonzero().squeeze(-1)  # one host sync per collected batch
    row, ep_start = found // T, found % T
    end = first_best[found]
    episode_end = ep_start + length[row, end].long() - 1
    return Segments(row, ep_start, end, episode_end, best[found])


def relabel(
    batch: TrajectoryBatch,
    segments: Segments,
    *,
    reward: float | torch.Tensor,
    min_length: int,
    mode: str = "final",
) -> TrajectoryBatch | None:
    """Copies of the segments' episodes, relabelled; None if there are none.

    Each copy is its episode moved to the start of the row (``extra["hetplug_row"]`` and
    ``extra["hetplug_step"]`` give each copied step's source row and step).
    ``mode="final"``: the copy stops at the segment's end (``done`` there, later steps
    masked out) and gets ``reward`` added at that step, like a reached sub-goal.
    ``mode="segment"``: ``reward`` is added at each of the segment's ``min_length`` steps,
    and the copy runs to the episode's end.
    """
    if segments.row.numel() == 0:
        return None
    rows, shift = segments.row, segments.start
    T = batch.max_steps
    t = torch.arange(T, device=rows.device).unsqueeze(0)
    source = (shift.unsqueeze(1) + t).clamp_max(T - 1)  # [K, T] source step of each copied step

    def take(value: torch.Tensor) -> torch.Tensor:
        value = value[rows]
        index = source.reshape(*source.shape, *([1] * (value.dim() - 2))).expand_as(value)
        return value.gather(1, index)

    changes = {}
    for name, value in batch.tensors().items():
        if name == "success" and value.dim() == 1:
            changes[name] = value[rows]
        elif not name.startswith("extra."):
            changes[name] = take(value)
    extra = {k: take(v) for k, v in batch.extra.items()}
    extra["hetplug_row"] = rows.unsqueeze(1).expand_as(source)  # where each copy came from
    extra["hetplug_step"] = source
    end = (segments.end - shift).unsqueeze(1)  # the segment's end in the copy
    at_end = t == end
    if mode == "final":
        mask = changes["mask"] & (t <= end)
        bonus = at_end
        done = at_end if batch.done is None else (changes["done"] & mask) | at_end
    else:
        mask = changes["mask"] & (t <= (segments.episode_end - shift).unsqueeze(1))
        bonus = (t <= end) & (t > end - min_length)
        done = None if batch.done is None else changes["done"] & mask
    copy_reward = changes["reward"]
    bonus = bonus.to(copy_reward.dtype) * reward
    if copy_reward.dim() == 3:
        bonus = bonus.unsqueeze(-1)
    changes.update(reward=copy_reward + bonus, mask=mask, extra=extra)
    if done is not None:
        changes["done"] = done
    if batch.success is not None:
        changes["success"] = torch.ones_like(changes["success"])
    return TrajectoryBatch(**changes)
