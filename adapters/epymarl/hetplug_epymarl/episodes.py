"""EPyMARL's ``EpisodeBatch`` as hetplug's plain tensors.

EpisodeBatch keys (FACTS.md): state ``[B, T, S]``, obs ``[B, T, N, O]``, actions
``[B, T, N, 1]``, reward ``[B, T, 1]`` (``[B, T, N]`` with ``common_reward=False``),
terminated ``[B, T, 1]``, filled ``[B, T, 1]``.
"""

from __future__ import annotations

from typing import Any

import torch

import hetplug


def width(scheme: dict, key: str) -> int:
    """Features per entry of ``key`` in a buffer's scheme (obs: per agent)."""
    vshape = scheme[key]["vshape"]
    return int(vshape) if isinstance(vshape, int) else int(vshape[-1])


def step_fields(ep_batch) -> dict[str, torch.Tensor]:
    """``reward [B, T]`` (``[B, T, N]`` per agent), ``mask [B, T]`` and ``done [B, T]``."""
    reward = ep_batch["reward"]
    return {
        "reward": (reward.squeeze(-1) if reward.shape[-1] == 1 else reward).float(),
        "mask": ep_batch["filled"].squeeze(-1).bool(),
        "done": ep_batch["terminated"].squeeze(-1).bool(),
    }


def trajectory_batch(ep_batch, device: torch.device | str, **fields: Any) -> hetplug.TrajectoryBatch:
    """The episodes ``[B, T]`` on the plugins' ``device``, with ``fields`` (e.g. positions)
    added. ``extra["hetplug_row"]`` is each episode's row: it travels with relabelled
    copies (Group-HER), so the host can find their source episodes."""
    B, T = ep_batch.batch_size, ep_batch.max_seq_length
    return hetplug.TrajectoryBatch(
        **{k: v.to(device) for k, v in step_fields(ep_batch).items()},
        obs=ep_batch["obs"].to(device),
        state=ep_batch["state"].to(device),
        actions=ep_batch["actions"].squeeze(-1).long().to(device),
        extra={"hetplug_row": torch.arange(B, device=device).unsqueeze(1).expand(B, T)},
        **fields,
    )
