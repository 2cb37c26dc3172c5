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

from hetplug._checks import check_int, check_mask, check_range, check_tensor, check_values
from hetplug.hookspecs import hookimpl
from hetplug.replay.sampler import PrioritizedSampler, SamplerConfig
from hetplug.state import counter, read_versioned, require_keys, state_counter, versioned
from hetplug.types import (
    HostSpec,
    SampleResult,
    TrajectoryBatch,
    check_batch,
    check_max_steps,
    check_reconfigure,
    require_configured,
)


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
        except (ValueError, TypeError) as err:  # name the field as the user wrote it
            raise type(err)(_rename_sampler_fields(str(err))) from None


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
    pad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a priority update's types and shapes (no host synchronisation); returns
    ``|TD|`` as ``[B, max_steps]`` (``[B, T]`` without ``pad``) and the indices as int64,
    both on the sampler's device.

    Index ranges and finiteness are checked by :func:`validate_update` once the new
    priorities are computed (before anything changes), with the sampler's ``check_inputs``.
    """
    check_tensor("indices", indices, 1, "integer")
    check_tensor("td_error", td_error, (2, 3), "real")
    if td_error.shape[0] != indices.shape[0]:
        raise ValueError(
            f"td_error must have one row per index ({indices.shape[0]}), got td_error of shape "
            f"{tuple(td_error.shape)}"
        )
    if td_error.shape[1] > max_steps or td_error.shape[1] < 1:
        raise ValueError(
            f"td_error must have 1 to max_steps={max_steps} steps, got td_error of shape {tuple(td_error.shape)}"
        )
    if mask is not None:
        check_mask("mask", mask, tuple(td_error.shape[:2]))
    dtype = torch.float64 if td_error.dtype == torch.float64 else torch.float32
    td = td_error.detach().abs()
    if td.device != sampler.device or td.dtype != dtype:
        td = td.to(sampler.device, dtype)
    if td.dim() == 3:
        td = td.mean(-1)
    if pad and td.shape[1] < max_steps:
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
    td_error: torch.Tensor | None = None,
) -> None:
    """With the sampler's ``check_inputs``: raise ``ValueError`` unless every index is a
    stored slot, ``td`` is finite and the new ``priorities`` are finite and >= 0. One host
    synchronisation for all of it: the fast test is the index range and the finiteness of
    ``priorities.sum()`` and of each of ``probes`` (quantities computed from all of ``td``,
    in which a NaN or inf would show, e.g. ``(td * mask).amax()``; the priorities carry
    one when every step counts) and, when the caller cannot rule out negative priorities
    (``signed``), of their sign. Only when it fails are the parts checked one by one, in
    that order, to name what is wrong (``td_error``, the caller's tensor, is named in
    place of ``td``). Call it before anything changes, then update the sampler unchecked.
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
    check_values(
        [
            ("indices", indices, "below", len(sampler)),
            ("td_error", td if td_error is None else td_error, "finite", None),
            ("priorities", priorities, "finite_nonnegative", None),
        ]
    )


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
        if check_reconfigure(self.spec, spec, "per"):
            return  # configured with this very spec already
        self.sampler = PrioritizedSampler(spec.capacity, self.config.sampler_config(), device=spec.device)
        self.spec = spec

    @hookimpl
    def hetplug_trajectories_collected(self, batch: TrajectoryBatch) -> None:
        sampler = self._require_sampler()
        check_batch(batch, "per")
        if batch.batch_size == 0:
            return  # an empty batch is a no-op
        if self.spec.rollout_storage:
            sampler.clear()  # the host stores only this collection
        self.env_steps = self.env_steps + batch.mask.sum()  # stays on the device: no host sync
        if self.config.is_beta_steps == 0 and self.spec.total_env_steps:
            sampler.set_progress(self.env_steps / self.spec.total_env_steps)

    @hookimpl
    def hetplug_replay_add(self, batch: TrajectoryBatch) -> torch.Tensor:
        sampler = self._require_sampler()
        check_batch(batch, "per")
        check_max_steps(batch, self.spec)
        if batch.td_error is None:
            return sampler.add(count=batch.batch_size)  # unseen: max priority so far
        td = reduce_td_per_item(batch.td_error.to(sampler.device), batch.mask.to(sampler.device))
        if self.config.check_inputs:  # one fused check, as the sampler's own
            check_values([("batch.td_error", batch.td_error, "finite", None)])
        return sampler._append(sampler._check_priorities(td + self.config.eps))

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
        td, idx = check_td_update(sampler, indices, td_error, mask, self.spec.max_steps, pad=False)
        m = mask if mask is None or mask.device == sampler.device else mask.to(sampler.device)
        priorities = _masked_mean(td, m) + self.config.eps
        validate_update(sampler, idx, td, priorities, td_error=td_error)  # NaN/inf in td shows in the mean
        sampler._update(idx, priorities.to(torch.float64))  # validated just above
        return priorities

    @hookimpl
    def hetplug_after_update(self, update: int) -> dict[str, Any]:
        check_int("update", update, 0)
        return priority_metrics("per", self._require_sampler())

    def _require_sampler(self) -> PrioritizedSampler:
        require_configured(self.sampler, "per")
        return self.sampler

    def state_dict(self) -> dict[str, Any]:
        return versioned(
            {"sampler": self._require_sampler().state_dict(), "env_steps": counter(self.env_steps)}
        )

    def check_state(self, state: Any) -> dict[str, Any]:
        """Validate a :meth:`state_dict` without changing anything; returns what
        :meth:`load_state_dict` assigns."""
        sampler = self._require_sampler()
        state = require_keys("per", read_versioned(state, "per"), ("sampler",))
        return {
            "sampler": sampler.check_state(state["sampler"]),
            "env_steps": state_counter(
                "per", {"env_steps": state.get("env_steps", 0)}, "env_steps", sampler.device
            ),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`, validated whole first (on error nothing changes)."""
        new = self.check_state(state)
        self.sampler._assign_state(new["sampler"])
        self.env_steps = new["env_steps"]
