"""The ``shep`` plugin: heterogeneity-driven trajectory priorities, intrinsic reward, Group-HER.

Reads ``positions`` (and ``actions``, ``alive``, ``opponent_*`` when present) from each
TrajectoryBatch. It keeps, per storage slot, the tactical-significance terms of eq. (5)
(|Delta delta| and max(0, I)) so that a later TD update recomputes the whole priority.
"""

from __future__ import annotations

from typing import Any

import torch

from hetplug.hookspecs import hookimpl
from hetplug.replay.per import check_td_update
from hetplug.replay.sampler import PrioritizedSampler, SamplerConfig
from hetplug.shep import group_her, scoring
from hetplug.shep.config import SHEPConfig
from hetplug.spatial import CellPartition, GridCells, bin_actions
from hetplug.types import CollectedResult, HostSpec, SampleResult, TrajectoryBatch


class SHEPPlugin:
    """SHEP as a hetplug plugin.

    Args:
        config: :class:`SHEPConfig` (or use ``get_plugin_manager(["shep"], {"shep": {...}})``).
        cells: a custom :class:`~hetplug.spatial.CellPartition` (graph, geodesic...);
            by default a :class:`~hetplug.spatial.GridCells` from the config.
    """

    config_class = SHEPConfig

    def __init__(self, config: SHEPConfig | None = None, cells: CellPartition | None = None) -> None:
        self.config = config or SHEPConfig()
        c = self.config
        self.cells = cells or GridCells(c.grid_low, c.grid_high, c.grid_shape, contiguity=c.contiguity)
        self.spec: HostSpec | None = None
        self.sampler: PrioritizedSampler | None = None
        self.env_steps = 0  # valid steps collected, drives the intrinsic-reward schedule
        self._last_descriptors: tuple | None = None

    # ------------------------------------------------------------------ hooks
    @hookimpl
    def hetplug_configure(self, spec: HostSpec) -> None:
        c = self.config
        self.spec = spec
        sampler_cfg = SamplerConfig(
            alpha=c.priority_exponent,
            beta=c.is_beta,
            beta_final=c.is_beta_final,
            beta_steps=c.is_beta_steps,
            max_probability=c.max_probability,
            weight_normalization=c.weight_normalization,
            check_inputs=c.check_inputs,
        )
        self.sampler = PrioritizedSampler(spec.capacity, sampler_cfg, device=spec.device)
        shape = (spec.capacity, spec.max_steps)
        self._shift = torch.zeros(shape, device=spec.device)  # lambda_D |Delta delta| inputs
        self._cohesion = torch.zeros(shape, device=spec.device)  # max(0, I)
        self._mask = torch.zeros(shape, dtype=torch.bool, device=spec.device)
        self._max_td = torch.ones((), device=spec.device)

    @hookimpl
    def hetplug_trajectories_collected(self, batch: TrajectoryBatch) -> CollectedResult:
        c = self.config
        desc, delta = self._descriptors(batch)
        shift = scoring.temporal_change(delta, c.delta_window)
        intrinsic = None
        valid = batch.mask.to(desc.moran.dtype)
        if c.intrinsic_reward:
            coef_d, coef_i = self.intrinsic_coefficients()
            score = scoring.situation_score(desc, c.alpha, c.beta, c.eta)
            intrinsic = scoring.intrinsic_reward(score, desc.moran, coef_d, coef_i) * valid
            self.env_steps += int(batch.mask.sum())
        extra = None
        if c.group_her:
            qualifies = desc.moran > c.her_moran_threshold
            if c.her_rising_advantage:
                qualifies = qualifies | (shift > 0)
            found, end = group_her.find_segments(qualifies, batch.mask, c.her_min_length)
            if c.her_only_failed and batch.success is not None:
                found = found & ~batch.success.bool()
            extra = group_her.relabel(
                batch,
                found,
                end,
                reward=c.her_reward,
                min_length=c.her_min_length,
                mode=c.her_relabel,
                max_count=int(c.her_max_fraction * batch.batch_size),
            )
        n_valid = valid.sum().clamp_min(1)
        metrics = {
            "shep/occupancy_entropy": (desc.occupancy_entropy * valid).sum() / n_valid,
            "shep/action_diversity": (desc.action_diversity * valid).sum() / n_valid,
            "shep/moran_i": (desc.moran * valid).sum() / n_valid,
            "shep/advantage_change": (shift.abs() * valid).sum() / n_valid,
        }
        if extra is not None:
            metrics["shep/her_trajectories"] = torch.tensor(float(extra.batch_size))
        return CollectedResult(intrinsic_reward=intrinsic, extra_trajectories=extra, metrics=metrics)

    @hookimpl
    def hetplug_replay_add(self, batch: TrajectoryBatch) -> torch.Tensor:
        sampler = self._require_sampler()
        t_max = self.spec.max_steps
        if batch.max_steps > t_max:
            raise ValueError(f"batch has {batch.max_steps} steps, more than max_steps={t_max}")
        if batch.batch_size > self.spec.capacity:
            raise ValueError(
                f"batch of {batch.batch_size} trajectories exceeds capacity={self.spec.capacity}"
            )
        desc, delta = self._descriptors(batch)
        pad = (0, t_max - batch.max_steps)
        shift = torch.nn.functional.pad(scoring.temporal_change(delta, self.config.delta_window).abs(), pad)
        cohesion = torch.nn.functional.pad(desc.moran.clamp_min(0), pad)
        mask = torch.nn.functional.pad(batch.mask.bool(), pad)
        if batch.td_error is not None:
            td = scoring.reduce_td(batch.td_error.to(shift.dtype), t_max)
        else:  # unseen trajectories: the largest |TD| so far, as PER does
            td = self._max_td.expand_as(shift)
        priorities = self._priorities(td, shift, cohesion, mask)
        indices = sampler.add(priorities)
        self._shift[indices] = shift.to(self._shift.dtype)
        self._cohesion[indices] = cohesion.to(self._cohesion.dtype)
        self._mask[indices] = mask
        if batch.td_error is not None:
            self._max_td = torch.maximum(self._max_td, td.max().to(self._max_td.dtype))
        return indices

    @hookimpl
    def hetplug_replay_sample(self, batch_size: int, generator: torch.Generator | None) -> SampleResult:
        return self._require_sampler().sample(batch_size, generator)

    @hookimpl
    def hetplug_update_priorities(
        self, indices: torch.Tensor, td_error: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        sampler = self._require_sampler()
        td, idx = check_td_update(sampler, indices, td_error, mask, self.spec.max_steps)
        step_mask = self._mask[idx]
        if mask is not None:
            step_mask = step_mask & torch.nn.functional.pad(
                mask.bool(), (0, self.spec.max_steps - mask.shape[1])
            )
        priorities = self._priorities(
            td.to(self._shift.dtype), self._shift[idx], self._cohesion[idx], step_mask
        )
        sampler.update(idx, priorities)  # validates before anything changes
        self._max_td = torch.maximum(self._max_td, (td * step_mask).max())
        return priorities

    # ------------------------------------------------------------------ helpers
    def intrinsic_coefficients(self) -> tuple[float, float]:
        """(beta_t, eta_t) of the intrinsic reward at the current number of env steps."""
        c = self.config
        frac = 1.0 if c.intrinsic_anneal_steps == 0 else min(1.0, self.env_steps / c.intrinsic_anneal_steps)
        d0, d1 = c.intrinsic_delta_coef
        m0, m1 = c.intrinsic_moran_coef
        return d0 + (d1 - d0) * frac, m0 + (m1 - m0) * frac

    def _descriptors(self, batch: TrajectoryBatch) -> tuple[scoring.Descriptors, torch.Tensor]:
        """Own-group descriptors [B, T] and the advantage delta(t) of eq. (4).

        A host usually passes the same batch to ``trajectories_collected`` and then to
        ``replay_add``; the last result is reused when the input tensors are the same
        objects, unmodified (identity plus torch's in-place version counter).
        """
        inputs = (
            batch.positions,
            batch.alive,
            batch.actions,
            batch.opponent_positions,
            batch.opponent_alive,
            batch.opponent_actions,
        )
        key = tuple((id(t), t._version) if t is not None else None for t in inputs)
        if self._last_descriptors is not None and self._last_descriptors[0] == key:
            return self._last_descriptors[1]
        result = self._compute_descriptors(batch)
        # Keep the inputs alive so their ids cannot be reused by other tensors.
        self._last_descriptors = (key, result, inputs)
        return result

    def _compute_descriptors(self, batch: TrajectoryBatch) -> tuple[scoring.Descriptors, torch.Tensor]:
        c = self.config
        if batch.positions is None:
            raise ValueError("SHEP needs TrajectoryBatch.positions [B, T, N, D]; the host gave none")
        own = scoring.describe(
            self.cells,
            batch.positions.float() if not batch.positions.is_floating_point() else batch.positions,
            alive=batch.alive,
            actions=self._categorical(batch.actions) if c.beta != 0 else None,
            n_actions=self._n_actions(batch.actions) if c.beta != 0 else None,
            transformation=c.moran_transformation,
            normalize=c.normalize_entropies,
        )
        score_self = scoring.situation_score(own, c.alpha, c.beta, c.eta)
        score_opp = None
        if batch.opponent_positions is not None:
            opp = scoring.describe(
                self.cells,
                batch.opponent_positions.to(
                    batch.positions.dtype if batch.positions.is_floating_point() else torch.float32
                ),
                alive=batch.opponent_alive,
                actions=self._categorical(batch.opponent_actions)
                if c.beta != 0 and batch.opponent_actions is not None
                else None,
                n_actions=self._n_actions(batch.opponent_actions)
                if c.beta != 0 and batch.opponent_actions is not None
                else None,
                transformation=c.moran_transformation,
                normalize=c.normalize_entropies,
            )
            score_opp = scoring.situation_score(opp, c.alpha, c.beta, c.eta)
        return own, scoring.advantage(score_self, score_opp, c.kappa)

    def _categorical(self, actions: torch.Tensor | None) -> torch.Tensor:
        if actions is None:
            raise ValueError("SHEP with beta != 0 needs TrajectoryBatch.actions (or set shep.beta=0)")
        if actions.is_floating_point():  # continuous [B, T, N, A] -> joint bins [B, T, N]
            c = self.config
            a = actions.shape[-1]
            return bin_actions(actions, [c.action_low] * a, [c.action_high] * a, c.action_bins)
        return actions.long()

    def _n_actions(self, actions: torch.Tensor | None) -> int:
        if actions is not None and actions.is_floating_point():
            return self.config.action_bins ** actions.shape[-1]
        if self.spec is None or self.spec.n_actions is None:
            raise ValueError("SHEP needs HostSpec.n_actions for discrete action diversity (or shep.beta=0)")
        return self.spec.n_actions

    def _priorities(self, td, shift, cohesion, mask) -> torch.Tensor:
        c = self.config
        step = scoring.step_priority(
            td,
            shift,
            cohesion,
            td_exponent=c.td_exponent,
            lambda_delta=c.lambda_delta,
            lambda_moran=c.lambda_moran,
            form=c.priority_form,
        )
        return scoring.trajectory_priority(step, mask) + c.eps

    def _require_sampler(self) -> PrioritizedSampler:
        if self.sampler is None:
            raise RuntimeError("the shep plugin is not configured: call hook.hetplug_configure(spec) first")
        return self.sampler

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        sampler = self._require_sampler()
        return {
            "sampler": sampler.state_dict(),
            "shift": self._shift.clone(),
            "cohesion": self._cohesion.clone(),
            "mask": self._mask.clone(),
            "max_td": self._max_td.clone(),
            "env_steps": self.env_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        sampler = self._require_sampler()
        if tuple(state["shift"].shape) != tuple(self._shift.shape):
            raise ValueError(
                f"saved SHEP state has shape {tuple(state['shift'].shape)}, this host has "
                f"{tuple(self._shift.shape)} (capacity, max_steps)"
            )
        sampler.load_state_dict(state["sampler"])
        self._shift.copy_(state["shift"])
        self._cohesion.copy_(state["cohesion"])
        self._mask.copy_(state["mask"])
        self._max_td = state["max_td"].to(self._max_td.device).clone()
        self.env_steps = int(state["env_steps"])
