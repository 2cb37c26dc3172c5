"""Group Hindsight Experience Replay (SHEP end of section 4.3, Algorithm 1 lines 12-15).

A step qualifies when the group is cohesive (I(t) > tau_th) or its advantage is rising
(Delta delta(t) > 0). The first run of at least ``min_length`` qualifying valid steps is
a "segment"; a trajectory with one is copied and the copy relabelled with the virtual
success reward. The originals are never altered: the copies are new tensors.
"""

from __future__ import annotations

import torch

from hetplug.types import TrajectoryBatch


def find_segments(
    qualifies: torch.Tensor, mask: torch.Tensor, min_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each trajectory, the first run of ``min_length`` qualifying valid steps.

    Args:
        qualifies: ``[B, T]`` bool.
        mask: ``[B, T]`` bool valid steps.

    Returns:
        ``(found [B] bool, end [B] int64)``: ``end`` is the step where the run first
        reaches ``min_length`` (the segment's end), or 0 where none was found.
    """
    q = qualifies & mask
    t = q.shape[-1]
    steps = torch.arange(t, device=q.device).expand_as(q)
    # Index of the last non-qualifying step at or before t (-1 if none) -> run length.
    last_break = torch.where(~q, steps, torch.full_like(steps, -1)).cummax(-1).values
    run = steps - last_break
    hit = q & (run >= min_length)
    found = hit.any(-1)
    end = hit.to(torch.uint8).argmax(-1)
    return found, end


def relabel(
    batch: TrajectoryBatch,
    found: torch.Tensor,
    end: torch.Tensor,
    *,
    reward: float,
    min_length: int,
    mode: str = "final",
    max_count: int | None = None,
) -> TrajectoryBatch | None:
    """Copies of the trajectories with a segment, relabelled; None if there are none.

    ``mode="final"``: the copy stops at the segment's end (``done`` True there, later
    steps masked out) and gets ``reward`` added at that step, like a reached sub-goal.
    ``mode="segment"``: ``reward`` is added at each of the segment's ``min_length`` steps
    and the rest of the copy is kept.
    """
    rows = torch.nonzero(found).squeeze(-1)  # one host sync per collected batch
    if max_count is not None:
        rows = rows[:max_count]
    if rows.numel() == 0:
        return None
    copy = batch.select(rows)
    end = end[rows]
    steps = torch.arange(copy.max_steps, device=end.device).unsqueeze(0)
    at_end = steps == end.unsqueeze(-1)
    if mode == "final":
        bonus = at_end
        mask = copy.mask & (steps <= end.unsqueeze(-1))
        done = at_end if copy.done is None else (copy.done & mask) | at_end
        changes = {"mask": mask, "done": done}
    else:
        bonus = (steps <= end.unsqueeze(-1)) & (steps > (end - min_length).unsqueeze(-1))
        changes = {}
    bonus = bonus.to(copy.reward.dtype) * reward
    if copy.reward.dim() == 3:
        bonus = bonus.unsqueeze(-1)
    changes["reward"] = copy.reward + bonus
    if copy.success is not None:
        changes["success"] = torch.ones_like(copy.success)
    return copy.replace(**changes)
