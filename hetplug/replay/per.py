"""The ``per`` plugin: prioritised replay from |TD| alone (Schaul et al., 2016).

Neither EPyMARL nor BenchMARL's off-policy path has a working prioritised buffer
(see FACTS.md), so hetplug ships this baseline next to SHEP. A stored item is a
trajectory (use T = 1 for transition-level replay); its priority is the mean |TD| over
its valid steps (and agents) plus ``eps``, and ``p_i`` is proportional to ``P_i^alpha``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

from hetplug._checks import check_finite_nonnegative, check_range, check_tensor
from hetplug.hookspecs import hookimpl
from hetplug.replay.sampler import PrioritizedSampler, SamplerConfig
from hetplug.state import read_versioned, versioned
from hetplug.types import HostSpec, SampleResult, TrajectoryBatch


@dataclass
class PERConfig:
    """Prioritised experience replay (Schaul et al., 2016, proportional variant).

    Field names match the ``shep`` plugin's: ``priority_exponent`` is PER's alpha and
    ``is_beta`` its beta (eq. 7 of SHEP's paper writes the same IS weights).
    """

    priority_exponent: float = 0.6
    """alpha: ``p_i = P_i^alpha / sum_j P_j^alpha`` (0 = uniform)."""
    is_beta: float = 0.4
    """Initial IS exponent beta in ``w_i = (N p_i)^-beta``."""
    is_beta_final: float = 1.0
    """Value beta is annealed to; 1 makes the weighted estimate unbiased."""
    is_beta_steps: int = 0
    """Sample calls over which beta moves linearly to ``is_beta_final``. 0 (default): over
    the run, by the environment steps collected against ``HostSpec.total_env_steps`` (beta
    reaches ``is_beta_final`` at the end); fixed ``is_beta`` if the host gives no length."""
    max_probability: float | None = None
    """Clip every p_i at this value, redistributing the excess (O(n) per draw)."""
    weight_normalization: str = "max"
    """IS weight normalisation: ``"max"`` (buffer, PER), ``"batch"`` or ``"none"``."""
    eps: float = 1e-6
    """Added to |TD| so that no item is starved."""
    fanout: int | None = None
    """Sum-tree children per node; None picks one from the capacity (see :class:`~hetplug.replay.SamplerConfig`)."""
    flat_max: int = 16384
    """Up to this capacity draws scan the flat masses (see :class:`~hetplug.replay.SamplerConfig`)."""
    check_inputs: bool = True
    """Validate priorities and indices (one host synchronisation per call)."""

    def __post_init__(self) -> None:
        self.sampler_config()  # validates the sampler's fields, named as here
        check_range("eps", self.eps, 0.0)

    def sampler_config(self) -> SamplerConfig:
        try:
            return SamplerConfig(
                alpha=self.priority_exponent,
                beta=self.is_beta,
                beta_final=self.is_beta_final,
                beta_steps=self.is_beta_steps,
                max_probability=self.max_probability,
                weight_normalization=self.weight_normalization,
                fanout=self.fanout,
                flat_max=self.flat_max,
                check_inputs=self.check_inputs,
            )
        except ValueError as err:  # name the field as the user wrote it
            raise ValueError(_rename_sampler_fields(str(err))) from None


_SAMPLER_NAMES = {"beta_final": "is_beta_final", "beta_steps": "is_beta_steps", "alpha": "priority_exponent",
                  "beta": "is_beta"}  # fmt: skip


def _rename_sampler_fields(message: str) -> str:
    return re.sub(r"\b(beta_final|beta_steps|alpha|beta)\b", lambda m: _SAMPLER_NAMES[m.group(1)], message)


def priority_metrics(name: str, sampler: PrioritizedSampler) -> dict[str, Any]:
    """What a prioritiser reports after each update: ``<name>/priority_mean``,
    ``/priority_max``, ``/stored`` and ``/priorities`` (the ``[stored]`` priorities)."""
    p = sampler.priorities
    out: dict[str, Any] = {f"{name}/stored": len(sampler), f"{name}/priorities": p}
    if p.numel():
        out.update({f"{name}/priority_mean": p.mean(), f"{name}/priority_max": p.max()})
    return out


def reduce_td_per_item(td_error: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean |TD| per row over valid steps (and agents): ``[B, T(, N)] -> [B]``."""
    td = td_error.detach().abs()
    if td.dim() == 3:
        td = td.mean(-1)
    if td.dim() == 1:
        return td
    return _masked_mean(td, None if mask is None else mask[:, : td.shape[1]])


def _masked_mean(td: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``[B, T] -> [B]``: the mean over each row's valid steps (0 for a row without any)."""
    if mask is None:
        return td.mean(-1)
    m = mask.to(td.dtype)
    return (td * m).sum(-1) / m.sum(-1).clamp_min(1.0)


def check_td_update(
    sampler: PrioritizedSampler,
    indices: torch.Tensor,
    td_error: torch.Tensor,
    mask: torch.Tensor | None,
    max_steps: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a priority update's shapes and dtypes (no host synchronisation); returns
    ``|TD|`` as ``[B, max_steps]`` and the indices as int64, both on the sampler's device.

    Index ranges and finiteness are checked by :func:`validate_update` once the new
    priorities are computed (before anything changes), with the sampler's ``check_inputs``.
    """
    check_tensor("indices", indices, 1)
    if indices.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"indices must be integer, got dtype {indices.dtype}")
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
    td = td_error.detach().abs()
    if td.device != sampler.device:
        td = td.to(sampler.device)
    if td.dim() == 3:
        td = td.mean(-1)
    if td.shape[1] < max_steps:
        td = torch.nn.functional.pad(td, (0, max_steps - td.shape[1]))
    if indices.device != sampler.device or indices.dtype != torch.long:
        indices = indices.to(sampler.device, torch.long)
    return td, indices


def validate_update(
    sampler: PrioritizedSampler,
    indices: torch.Tensor,
    td: torch.Tensor,
    priorities: torch.Tensor,
    *probes: torch.Tensor,
    signed: bool = False,
) -> None:
    """With the sampler's ``check_inputs``: raise ``ValueError`` unless every index is a
    stored slot, ``td`` is finite and the new ``priorities`` are finite and >= 0. One host
    synchronisation for all of it: the fast test is the index range and the finiteness of
    ``priorities.sum()`` and of each of ``probes`` (quantities computed from all of ``td``,
    in which a NaN or inf would show, e.g. ``(td * mask).amax()``; the priorities carry
    one when every step counts) and, when the caller cannot rule out negative priorities
    (``signed``), of their sign. Only when it fails are the parts checked one by one, in
    that order, to name what is wrong. Call it before anything changes, then update the
    sampler with ``validate=False``.
    """
    if not sampler.config.check_inputs or indices.numel() == 0:
        return
    lo, hi = torch.aminmax(indices)
    ok = (lo >= 0) & (hi < len(sampler)) & torch.isfinite(priorities.sum())
    for probe in probes:
        ok = ok & torch.isfinite(probe)
    if signed:
        ok = ok & (priorities.amin() >= 0)
    if bool(ok):
        return
    sampler.check_indices(indices)
    if not bool(torch.isfinite(td).all()):
        raise ValueError("td_error contains NaN or inf")
    check_finite_nonnegative("priorities", priorities)


class PERPlugin:
    """Plain prioritised replay as a hetplug plugin (name ``per``)."""

    config_class = PERConfig

    def __init__(self, config: PERConfig | None = None) -> None:
        self.config = config or PERConfig()
        self.spec: HostSpec | None = None
        self.sampler: PrioritizedSampler | None = None
        self.env_steps: torch.Tensor | int = (
            0  # valid steps collected (a device tensor): the IS exponent's schedule
        )

    @hookimpl
    def hetplug_configure(self, spec: HostSpec) -> None:
        self.spec = spec
        self.sampler = PrioritizedSampler(spec.capacity, self.config.sampler_config(), device=spec.device)

    @hookimpl
    def hetplug_trajectories_collected(self, batch: TrajectoryBatch) -> None:
        sampler = self._require_sampler()
        if self.spec.rollout_storage:
            sampler.clear()  # the host stores only this collection
        self.env_steps = self.env_steps + batch.mask.sum()  # stays on the device: no host sync
        if self.config.is_beta_steps == 0 and self.spec.total_env_steps:
            sampler.set_progress(self.env_steps / self.spec.total_env_steps)

    @hookimpl
    def hetplug_replay_add(self, batch: TrajectoryBatch) -> torch.Tensor:
        sampler = self._require_sampler()
        if batch.td_error is None:
            return sampler.add(count=batch.batch_size)  # unseen: max priority so far
        td = reduce_td_per_item(batch.td_error.to(sampler.device), batch.mask.to(sampler.device))
        return sampler.add(td + self.config.eps)

    @hookimpl
    def hetplug_replay_sample(self, batch_size: int, generator: torch.Generator | None) -> SampleResult:
        out = self._require_sampler().sample(batch_size, generator)
        dtype = self.spec.dtype  # the host's (the sampler keeps float64 masses)
        return SampleResult(out.indices, out.weights.to(dtype), out.probabilities.to(dtype))

    @hookimpl
    def hetplug_update_priorities(
        self, indices: torch.Tensor, td_error: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        sampler = self._require_sampler()
        td, idx = check_td_update(sampler, indices, td_error, mask, td_error.shape[1])
        m = mask if mask is None or mask.device == sampler.device else mask.to(sampler.device)
        priorities = _masked_mean(td, m) + self.config.eps
        validate_update(sampler, idx, td, priorities)  # a NaN or inf in td shows in the mean
        sampler.update(idx, priorities, validate=False)
        return priorities

    @hookimpl
    def hetplug_after_update(self, update: int) -> dict[str, Any]:
        return priority_metrics("per", self._require_sampler())

    def _require_sampler(self) -> PrioritizedSampler:
        if self.sampler is None:
            raise RuntimeError("the per plugin is not configured: call hook.hetplug_configure(spec) first")
        return self.sampler

    def state_dict(self) -> dict[str, Any]:
        return versioned({"sampler": self._require_sampler().state_dict(), "env_steps": int(self.env_steps)})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = read_versioned(state, "per")
        self._require_sampler().load_state_dict(state["sampler"])
        self.env_steps = int(state.get("env_steps", 0))
