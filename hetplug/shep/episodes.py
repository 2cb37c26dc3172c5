"""Episodes inside stored rows.

A host's row of ``T`` steps may hold several episodes: BenchMARL's rows are segments of a
vectorised environment's stream, where an episode that ends (``done``) is followed by the
next one in the same row. SHEP scores episodes (its paper's trajectories): every quantity
that looks back in time (Delta delta, Delta E), every Group-HER segment and every
trajectory priority stays inside one episode. ``[B, T]`` tensors, batched, no host sync.
"""

from __future__ import annotations

import torch


def episode_index(done: torch.Tensor | None, shape: tuple[int, ...], device) -> torch.Tensor:
    """``[B, T]`` int64: which episode of its row each step belongs to (0, 1, ...): a new
    episode starts after every ``done``."""
    if done is None:
        return torch.zeros(shape, dtype=torch.long, device=device)
    ends = done.bool().long()
    return torch.nn.functional.pad(ends.cumsum(-1)[..., :-1], (1, 0))


def episode_start(index: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` int64: the first step of each step's episode, from :func:`episode_index`."""
    T = index.shape[-1]
    steps = torch.arange(T, device=index.device).expand_as(index)
    new = torch.ones_like(index, dtype=torch.bool)
    new[..., 1:] = index[..., 1:] != index[..., :-1]
    return torch.where(new, steps, torch.zeros_like(steps)).cummax(-1).values


def episode_lengths(index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` float: the number of valid steps of each step's episode."""
    T = index.shape[-1]
    counts = torch.zeros(index.shape[:-1] + (T,), dtype=torch.float32, device=index.device)
    counts.scatter_add_(-1, index, mask.to(counts.dtype))
    return counts.gather(-1, index)
