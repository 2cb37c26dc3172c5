"""The ``per`` plugin: prioritised replay from |TD| alone (Schaul et al., 2016).

Neither EPyMARL nor BenchMARL's off-policy path has a working prioritised buffer
(see FACTS.md), so hetplug ships this baseline next to SHEP. A stored item is a
trajectory (use T = 1 for transition-level replay); its priority is the mean |TD| over
its valid steps (and agents) plus ``eps``, and ``p_i`` is proportional to ``P_i^alpha``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from hetplug._checks import check_range, check_tensor
from hetplug.hookspecs import hookimpl
from hetplug.replay.sampler import PrioritizedSampler, SamplerConfig
from hetplug.types import HostSpec, SampleResult, TrajectoryBatch


@dataclass
class PERConfig(SamplerConfig):
    """Prioritised experience replay: the sampler's settings (alpha 0.6, beta 0.4 -> 1, as
    Schaul et al., 2016, proportional variant) plus ``eps``."""

    eps: float = 1e-6
    """Added to |TD| so that no item is starved."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("eps", self.eps, 0.0)

    def sampler_config(self) -> SamplerConfig:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(SamplerConfig)}
        return SamplerConfig(**fields)


def reduce_td_per_item(td_error: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean |TD| per row over valid steps (and agents): ``[B, T(, N)] -> [B]``."""
    td = td_error.detach().abs()
    if td.dim() == 3:
        td = td.mean(-1)
    if td.dim() == 1:
        return td
    if mask is None:
        return td.mean(-1)
    m = mask[:, : td.shape[1]].to(td.dtype)
    return (td * m).sum(-1) / m.sum(-1).clamp_min(1.0)


def check_td_update(
    sampler: PrioritizedSampler,
    indices: torch.Tensor,
    td_error: torch.Tensor,
    mask: torch.Tensor | None,
    max_steps: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a priority update; returns ``|TD|`` as ``[B, max_steps]`` and device indices.

    Shapes are always checked (no host synchronisation); index ranges and finiteness only
    with the sampler's ``check_inputs`` (each costs a synchronisation on a GPU).
    """
    if sampler.config.check_inputs:
        sampler.check_indices(indices)
    else:
        check_tensor("indices", indices, 1)
    if not isinstance(td_error, torch.Tensor) or td_error.dim() not in (2, 3):
        raise ValueError(
            f"td_error must be a [B, T] or [B, T, N] tensor, got {getattr(td_error, 'shape', type(td_error))}"
        )
    if td_error.shape[0] != indices.shape[0]:
        raise ValueError(f"td_error has {td_error.shape[0]} rows but indices has {indices.shape[0]}")
    if td_error.shape[1] > max_steps:
        raise ValueError(f"td_error has {td_error.shape[1]} steps, more than max_steps={max_steps}")
    if mask is not None and tuple(mask.shape) != tuple(td_error.shape[:2]):
        raise ValueError(f"mask must have shape {tuple(td_error.shape[:2])}, got {tuple(mask.shape)}")
    td = td_error.detach().abs().to(sampler.device)
    if td.dim() == 3:
        td = td.mean(-1)
    if sampler.config.check_inputs and not bool(torch.isfinite(td).all()):
        raise ValueError("td_error contains NaN or inf")
    td = torch.nn.functional.pad(td, (0, max_steps - td.shape[1]))
    return td, indices.to(sampler.device, torch.long)


class PERPlugin:
    """Plain prioritised replay as a hetplug plugin (name ``per``)."""

    config_class = PERConfig

    def __init__(self, config: PERConfig | None = None) -> None:
        self.config = config or PERConfig()
        self.spec: HostSpec | None = None
        self.sampler: PrioritizedSampler | None = None

    @hookimpl
    def hetplug_configure(self, spec: HostSpec) -> None:
        self.spec = spec
        self.sampler = PrioritizedSampler(spec.capacity, self.config.sampler_config(), device=spec.device)

    @hookimpl
    def hetplug_replay_add(self, batch: TrajectoryBatch) -> torch.Tensor:
        sampler = self._require_sampler()
        if batch.td_error is None:
            return sampler.add(count=batch.batch_size)  # unseen: max priority so far
        td = reduce_td_per_item(batch.td_error.to(sampler.device), batch.mask.to(sampler.device))
        return sampler.add(td + self.config.eps)

    @hookimpl
    def hetplug_replay_sample(self, batch_size: int, generator: torch.Generator | None) -> SampleResult:
        return self._require_sampler().sample(batch_size, generator)

    @hookimpl
    def hetplug_update_priorities(
        self, indices: torch.Tensor, td_error: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        sampler = self._require_sampler()
        td, idx = check_td_update(sampler, indices, td_error, mask, td_error.shape[1])
        m = None if mask is None else mask.to(sampler.device)
        priorities = reduce_td_per_item(td, m) + self.config.eps
        sampler.update(idx, priorities)
        return priorities

    def _require_sampler(self) -> PrioritizedSampler:
        if self.sampler is None:
            raise RuntimeError("the per plugin is not configured: call hook.hetplug_configure(spec) first")
        return self.sampler

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self._require_sampler().state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._require_sampler().load_state_dict(state["sampler"])
