"""The ``shep`` plugin: heterogeneity-driven episode priorities, intrinsic reward, Group-HER.

Reads ``positions`` (and ``actions``, ``alive``, ``opponent_*``, ``done``, ``success`` when
present) from each TrajectoryBatch. A stored row may hold several episodes (after each
``done`` a new one starts): every quantity is computed per episode, as the paper's
trajectories. Per storage slot it keeps the tactical-significance terms of eq. (5)
(|Delta delta| and max(0, I)) and each step's episode, so that a later TD update recomputes
the whole priority. What an update does not change is kept ready per slot (the tactical term
of each step, each step's share of its episode, which episodes exist), so that an update
costs a handful of ops on the sampled rows: ``|TD|^a``, one scatter for the episodes' means,
their masses and one host synchronisation for every check (``check_inputs``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from hetplug._checks import check_int, check_range, check_values
from hetplug.hookspecs import hookimpl
from hetplug.replay.per import check_td_update, priority_metrics, validate_update
from hetplug.replay.sampler import PrioritizedSampler, SamplerConfig
from hetplug.shep import group_her, scoring
from hetplug.shep.config import SHEPConfig
from hetplug.shep.episodes import episode_index, episode_lengths, episode_start
from hetplug.spatial import CellPartition, GridCells, bin_actions
from hetplug.state import (
    counter,
    read_versioned,
    require_keys,
    state_counter,
    state_tensor,
    versioned,
)
from hetplug.types import (
    CollectedResult,
    HostSpec,
    SampleResult,
    TrajectoryBatch,
    check_batch,
    check_max_steps,
    check_reconfigure,
    require_configured,
)

#: what SHEPPlugin.state_dict() holds besides its format version (format 0 lacks the
#: per-episode tables "episode", "step_mass", "episodes" and "min_mass")
STATE_KEYS = ("sampler", "shift", "cohesion", "mask", "max_td", "env_steps")


class SHEPPlugin:
    """SHEP as a hetplug plugin.

    Args:
        config: :class:`SHEPConfig` (or use ``get_plugin_manager(["shep"], {"shep": {...}})``).
        cells: a custom :class:`~hetplug.spatial.CellPartition` (graph, geodesic...);
            by default a :class:`~hetplug.spatial.GridCells` from the config.
    """

    config_class = SHEPConfig
    #: ``hetplug_update_priorities`` with ``mask=None`` uses the valid steps each trajectory
    #: was added with, so a host whose valid steps never change after ``replay_add`` (the
    #: BenchMARL adapter's storage) need not pass them again: a mask costs a recount of
    #: every sampled row's episodes.
    keeps_valid_steps = True

    def __init__(self, config: SHEPConfig | None = None, cells: CellPartition | None = None) -> None:
        self.config = config or SHEPConfig()
        c = self.config
        if cells is not None and not isinstance(cells, CellPartition):
            raise TypeError(
                f"cells must be a hetplug.spatial.CellPartition, got cells={type(cells).__name__}"
            )
        self.cells = cells or GridCells(c.grid_low, c.grid_high, c.grid_shape, contiguity=c.contiguity)
        self.spec: HostSpec | None = None
        self.sampler: PrioritizedSampler | None = None
        self.env_steps: torch.Tensor | int = 0  # valid steps collected (a device tensor): the schedules
        self.her_credit = 0.0  # Group-HER copies still allowed by her_max_fraction
        self._last_descriptors: tuple | None = None
        self._checked: tuple | None = None  # (key, inputs) of the batch collection checked last

    # ------------------------------------------------------------------ hooks
    @hookimpl
    def hetplug_configure(self, spec: HostSpec) -> None:
        if check_reconfigure(self.spec, spec, "shep"):
            return  # configured with this very spec already
        c = self.config
        # The sampler draws rows by the sum of their episodes' masses; SHEP applies the
        # priority exponent to each episode itself (alpha 1 here).
        sampler_cfg = SamplerConfig(
            alpha=1.0,
            beta=c.is_beta,
            beta_final=c.is_beta_final,
            beta_steps=c.is_beta_steps,
            max_probability=c.max_probability,
            weight_normalization=c.weight_normalization,
            check_inputs=c.check_inputs,
        )
        self.sampler = PrioritizedSampler(spec.capacity, sampler_cfg, device=spec.device)
        self.spec = spec
        shape = (spec.capacity, spec.max_steps)
        self._shift = torch.zeros(shape, device=spec.device)  # lambda_D |Delta delta| inputs
        self._cohesion = torch.zeros(shape, device=spec.device)  # max(0, I)
        self._mask = torch.zeros(shape, dtype=torch.bool, device=spec.device)
        self._episode = torch.zeros(shape, dtype=torch.long, device=spec.device)
        f64 = dict(dtype=torch.float64, device=spec.device)
        # What a TD update leaves unchanged (from the four tables above, see _derive).
        self._tactical = torch.zeros(shape, **f64)  # lambda_D |Delta delta| + lambda_I max(0, I)
        self._share = torch.zeros(shape, **f64)  # 1 / the step's episode's valid steps (0 if invalid)
        self._absent = torch.ones(shape, dtype=torch.bool, device=spec.device)  # no such episode in the row
        self._episodes = torch.zeros(spec.capacity, **f64)  # episodes with a valid step, per row
        # The masses (rewritten by every update).
        self._step_mass = torch.zeros(shape, **f64)  # a step's draw weight: episode mass x share
        self._ep_mass = torch.zeros(shape, **f64)  # the mass of each step's episode
        self._min_mass = torch.full((spec.capacity,), torch.inf, **f64)
        self._zero = torch.zeros((), **f64)
        self._max_td = torch.ones((), device=spec.device)
        self._reward_scale = torch.zeros((), device=spec.device)

    def _value_checks(self, batch: TrajectoryBatch, descriptor_inputs: bool = True) -> list[tuple]:
        """The value checks of a batch's fields that SHEP reads (for one fused check); without
        ``descriptor_inputs``, only the reward and TD errors (the rest was checked already)."""
        c = self.config
        checks: list[tuple] = [
            ("batch.reward", batch.reward, "finite", None),
            ("batch.td_error", batch.td_error, "finite", None),
        ]
        if not descriptor_inputs:
            return checks
        checks += [
            ("batch.positions", batch.positions, "finite", None),
            ("batch.alive", batch.alive, "finite_nonnegative", None),
            ("batch.opponent_positions", batch.opponent_positions, "finite", None),
            ("batch.opponent_alive", batch.opponent_alive, "finite_nonnegative", None),
        ]
        for name in ("actions", "opponent_actions"):
            actions = getattr(batch, name)
            if c.beta == 0 or actions is None:
                continue
            if actions.is_floating_point():
                checks.append((f"batch.{name}", actions, "finite", None))
            elif self.spec.n_actions is not None:
                checks.append((f"batch.{name}", actions, "below", self.spec.n_actions))
        return checks

    def _check_batch(self, batch: TrajectoryBatch) -> None:
        """Types and required fields (free), then, with ``check_inputs``, the values of the
        fields SHEP reads in one fused check (one host synchronisation)."""
        check_batch(batch, "shep")
        if batch.positions is None:
            raise ValueError("SHEP needs TrajectoryBatch.positions [B, T, N, D]; the host gave none")
        if self.config.check_inputs:
            check_values(self._value_checks(batch))
        # Keep the checked inputs alive too, so that no other tensor takes their ids.
        self._checked = (self._descriptor_key(batch), self._descriptor_inputs(batch))

    @hookimpl
    def hetplug_trajectories_collected(self, batch: TrajectoryBatch) -> CollectedResult | None:
        c = self.config
        sampler = self._require_sampler()
        self._check_batch(batch)
        if batch.batch_size == 0:
            return None  # an empty batch is a no-op
        if self.spec.rollout_storage:
            sampler.clear()  # the host stores only this collection
        desc, delta, start = self._descriptors(batch)
        shift = scoring.temporal_change(delta, c.delta_window, start)
        intrinsic = None
        valid = batch.mask.to(desc.moran.dtype)
        if c.intrinsic_reward:  # Algorithm 1 line 8, Delta E inside each episode
            coef_d, coef_i = self.intrinsic_coefficients()
            score = scoring.situation_score(desc, c.alpha, c.beta, c.eta)
            intrinsic = scoring.intrinsic_reward(score, desc.moran, coef_d, coef_i, start) * valid
        self.env_steps = self.env_steps + batch.mask.sum()  # stays on the device: no host sync
        if c.is_beta_steps == 0 and self.spec.total_env_steps:
            sampler.set_progress(self.env_steps / self.spec.total_env_steps)
        extra = self._group_her(batch, desc, delta, shift, start) if c.group_her else None
        n_valid = valid.sum().clamp_min(1)
        metrics = {
            "shep/occupancy_entropy": (desc.occupancy_entropy * valid).sum() / n_valid,
            "shep/action_diversity": (desc.action_diversity * valid).sum() / n_valid,
            "shep/moran_i": (desc.moran * valid).sum() / n_valid,
            "shep/advantage_change": (shift.abs() * valid).sum() / n_valid,
            "shep/is_beta": sampler.beta,
        }
        if c.group_her:
            metrics["shep/her_trajectories"] = 0 if extra is None else extra.batch_size
        if intrinsic is not None:
            metrics["shep/intrinsic_reward"] = intrinsic.sum() / n_valid
        return CollectedResult(intrinsic_reward=intrinsic, extra_trajectories=extra, metrics=metrics)

    def _group_her(self, batch, desc, delta, shift, start) -> TrajectoryBatch | None:
        """Algorithm 1 lines 12-15: copies of the episodes with the best segments, as many
        as ``her_max_fraction`` of the collected episodes allows on average."""
        c = self.config
        self._reward_scale = torch.maximum(self._reward_scale, batch.reward.detach().abs().max())
        qualifies = desc.moran > c.her_moran_threshold
        if c.her_rising_advantage:
            qualifies = qualifies | (shift > 0)
        if c.her_only_failed and batch.success is not None:
            won = batch.success.bool()
            qualifies = qualifies & ~(won if won.dim() == 2 else won.unsqueeze(-1))  # per step or per row
        index = episode_index(batch.done, batch.mask.shape, batch.device)
        length = episode_lengths(index, batch.mask)
        segments = group_her.find_segments(qualifies, batch.mask, c.her_min_length, start, delta, length)
        episodes = int(((length > 0) & (torch.arange(batch.max_steps, device=batch.device) == start)).sum())
        self.her_credit = min(
            self.her_credit + c.her_max_fraction * episodes, c.her_max_fraction * episodes + 1
        )
        allowed = min(math.ceil(self.her_credit - 1e-9), segments.row.numel())
        if allowed <= 0:
            return None
        best = torch.topk(segments.gain, allowed).indices  # the largest gains in the advantage
        self.her_credit -= allowed
        chosen = group_her.Segments(*(field[best] for field in segments))
        reward = c.her_reward * self._reward_scale if c.her_reward_relative else c.her_reward
        return group_her.relabel(
            batch, chosen, reward=reward, min_length=c.her_min_length, mode=c.her_relabel
        )

    @hookimpl
    def hetplug_replay_add(self, batch: TrajectoryBatch) -> torch.Tensor:
        sampler = self._require_sampler()
        check_batch(batch, "shep")
        t_max = self.spec.max_steps
        check_max_steps(batch, self.spec)
        if batch.batch_size > self.spec.capacity:
            raise ValueError(
                f"batch.batch_size must be <= capacity={self.spec.capacity}, got batch.batch_size={batch.batch_size}"
            )
        if batch.positions is None:
            raise ValueError("SHEP needs TrajectoryBatch.positions [B, T, N, D]; the host gave none")
        if batch.batch_size == 0:
            return torch.zeros(0, dtype=torch.long, device=sampler.device)  # a no-op
        desc, delta, start = self._descriptors(batch)
        pad = (0, t_max - batch.max_steps)
        shift = torch.nn.functional.pad(
            scoring.temporal_change(delta, self.config.delta_window, start).abs(), pad
        )
        cohesion = torch.nn.functional.pad(desc.moran.clamp_min(0), pad)
        mask = torch.nn.functional.pad(batch.mask, pad)
        episode = episode_index(batch.done, batch.mask.shape, batch.device)
        episode = torch.nn.functional.pad(episode, pad, value=0).clamp_max(t_max - 1)
        if batch.td_error is not None:
            td = scoring.reduce_td(batch.td_error.to(shift.dtype), t_max)
        else:  # unseen trajectories: the largest |TD| so far, as PER does
            td = self._max_td.expand_as(shift)
        shift, cohesion = shift.to(self._shift.dtype), cohesion.to(self._cohesion.dtype)
        tactical, tables = self._derive(shift, cohesion, mask, episode)
        masses = self._masses(td, tactical, tables, episode)
        row = sampler._check_priorities(masses.row)
        if self.config.check_inputs:  # the batch and the priorities: one fused check
            checked = self._checked is not None and self._checked[0] == self._descriptor_key(batch)
            unchecked = not checked  # the descriptor inputs trajectories_collected checked
            checks = self._value_checks(batch, descriptor_inputs=unchecked)
            check_values([*checks, ("priorities", row, "finite_nonnegative", None)])
        indices = sampler._append(row)
        self._store(indices, masses, tables)
        self._shift[indices] = shift
        self._cohesion[indices] = cohesion
        self._mask[indices] = mask
        self._episode[indices] = episode
        self._tactical[indices] = tactical
        self._share[indices] = tables.share
        self._absent[indices] = tables.absent
        if batch.td_error is not None:
            self._max_td = torch.maximum(self._max_td, td.max().to(self._max_td.dtype))
        return indices

    @hookimpl
    def hetplug_replay_sample(self, batch_size: int, generator: torch.Generator | None) -> SampleResult:
        """Rows by the sum of their episodes' masses, then an episode of the row by its mass
        and a step of it uniformly; IS weights of eq. (7) per episode, over the stored
        episodes (N the number of stored episodes, normalised as configured)."""
        sampler = self._require_sampler()
        check_int("batch_size", batch_size, 1)
        c = self.config
        beta = sampler.beta  # the exponent this draw uses (the draw advances the schedule)
        rows = sampler.draw(batch_size, generator)
        slots = rows.indices
        mass = self._step_mass.index_select(0, slots)  # [B, T]
        cum = mass.cumsum(-1)
        end = cum[:, -1:]
        u = torch.rand(batch_size, 1, generator=generator, device=mass.device, dtype=mass.dtype) * end
        # u below the row's total (rounding can put it at the very end), so never past the last
        # step with mass, nor on a step without (its cumulative sum equals the one before).
        u = torch.minimum(u, torch.nextafter(end, self._zero))
        step = torch.searchsorted(cum, u, right=True).squeeze(-1).clamp_max(mass.shape[1] - 1)
        episode_mass = self._ep_mass.view(-1).index_select(0, torch.add(step, slots, alpha=mass.shape[1]))
        p = rows.probabilities * episode_mass / rows.mass.clamp_min(torch.finfo(mass.dtype).tiny)
        size = len(sampler)
        if c.weight_normalization == "max":  # (N p)^-beta / (N p_min)^-beta, p_min the least episode's
            if c.max_probability is None:  # p = episode mass / total: the total cancels
                weights = (self._min_mass[:size].amin() / episode_mass).pow(beta)
            else:
                p_rows = sampler.probabilities()
                share = self._min_mass[:size] / sampler.priorities.clamp_min(torch.finfo(p_rows.dtype).tiny)
                p_min = torch.where(p_rows > 0, p_rows * share, torch.inf).amin()
                weights = (p_min / p).pow(beta)
        else:
            weights = (self._episodes[:size].sum() * p).pow(-beta)
            if c.weight_normalization == "batch":
                weights = weights / weights.max()
        dtype = self.spec.dtype  # the host's (masses are kept in float64)
        return SampleResult(indices=slots, weights=weights.to(dtype), probabilities=p.to(dtype), steps=step)

    @hookimpl
    def hetplug_update_priorities(
        self, indices: torch.Tensor, td_error: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        sampler = self._require_sampler()
        c = self.config
        td, idx = check_td_update(sampler, indices, td_error, mask, self.spec.max_steps)
        if idx.numel() == 0:
            return torch.zeros(0, dtype=torch.float64, device=sampler.device)  # a no-op
        # Checked below with everything else (one synchronisation); until then no index
        # may read outside the tables.
        rows = idx.clamp(0, self.spec.capacity - 1) if c.check_inputs else idx
        episode = self._episode.index_select(0, rows)  # (index_select: the fastest row gather)
        valid = self._mask.index_select(0, rows)
        if mask is None:  # the steps stored as valid: the episodes' tables are ready
            tables = scoring.EpisodeTables(
                self._share.index_select(0, rows), self._absent.index_select(0, rows), None
            )
        else:
            mask = mask.to(valid.device, torch.bool)
            valid = valid & torch.nn.functional.pad(mask, (0, self.spec.max_steps - mask.shape[1]))
            tables = scoring.episode_tables(valid, episode)
        masses = self._masses(td, self._tactical.index_select(0, rows), tables, episode)
        td_max = (td * valid).amax()  # NaN if any TD is (a NaN or inf anywhere makes one)
        negative = c.spatial_priority and min(c.lambda_delta, c.lambda_moran) < 0
        validate_update(sampler, idx, td, masses.row, td_max, signed=negative, td_error=td_error)
        sampler.update(idx, masses.row, validate=False)
        self._store(idx, masses, tables)
        self._max_td = torch.maximum(self._max_td, td_max)
        return masses.row

    @hookimpl
    def hetplug_after_update(self, update: int) -> dict[str, Any]:
        check_int("update", update, 0)
        return priority_metrics("shep", self._require_sampler())

    # ------------------------------------------------------------------ helpers
    def intrinsic_coefficients(self) -> tuple[float | torch.Tensor, float | torch.Tensor]:
        """(beta_t, eta_t) of the intrinsic reward at the current number of env steps (0-d
        tensors once steps were counted: no host synchronisation)."""
        c = self.config
        d0, d1 = c.intrinsic_delta_coef
        m0, m1 = c.intrinsic_moran_coef
        if c.intrinsic_anneal_steps == 0:
            return d1, m1
        frac = self.env_steps / c.intrinsic_anneal_steps
        frac = frac.clamp(max=1.0) if isinstance(frac, torch.Tensor) else min(1.0, frac)
        return d0 + (d1 - d0) * frac, m0 + (m1 - m0) * frac

    def _descriptors(self, batch: TrajectoryBatch) -> tuple[scoring.Descriptors, torch.Tensor, torch.Tensor]:
        """Own-group descriptors [B, T], the advantage delta(t) of eq. (4) and each step's
        episode start.

        A host usually passes the same batch to ``trajectories_collected`` and then to
        ``replay_add``; the last result is reused when the input tensors are the same
        objects, unmodified (identity plus torch's in-place version counter).
        """
        key = self._descriptor_key(batch)
        if self._last_descriptors is not None and self._last_descriptors[0] == key:
            return self._last_descriptors[1]
        own, delta = self._compute_descriptors(batch)
        start = episode_start(episode_index(batch.done, batch.mask.shape, batch.device))
        result = (own, delta, start)
        # Keep the inputs alive so their ids cannot be reused by other tensors.
        self._last_descriptors = (key, result, self._descriptor_inputs(batch))
        return result

    @staticmethod
    def _descriptor_inputs(batch: TrajectoryBatch) -> tuple[torch.Tensor | None, ...]:
        """The batch fields the descriptors are computed from."""
        return (batch.done, batch.positions, batch.alive, batch.actions,
                batch.opponent_positions, batch.opponent_alive, batch.opponent_actions)  # fmt: skip

    def _descriptor_key(self, batch: TrajectoryBatch) -> tuple:
        """Identity and in-place version of each descriptor input: equal keys mean the same,
        unmodified tensors (while the cache keeps them alive, no other tensor takes their id)."""
        return tuple((id(t), t._version) if t is not None else None for t in self._descriptor_inputs(batch))

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
            check=False,  # validated by _check_batch (check_inputs)
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
                check=False,
            )
            score_opp = scoring.situation_score(opp, c.alpha, c.beta, c.eta)
        return own, scoring.advantage(score_self, score_opp, c.kappa)

    def _categorical(self, actions: torch.Tensor | None) -> torch.Tensor:
        if actions is None:
            raise ValueError("SHEP with beta != 0 needs TrajectoryBatch.actions (or set shep.beta=0)")
        if actions.is_floating_point():  # continuous [B, T, N, A] -> joint bins [B, T, N]
            c = self.config
            a = actions.shape[-1]
            return bin_actions(actions, [c.action_low] * a, [c.action_high] * a, c.action_bins, check=False)
        return actions.long()

    def _n_actions(self, actions: torch.Tensor | None) -> int:
        if actions is not None and actions.is_floating_point():
            return self.config.action_bins ** actions.shape[-1]
        if self.spec is None or self.spec.n_actions is None:
            raise ValueError("SHEP needs HostSpec.n_actions for discrete action diversity (or shep.beta=0)")
        return self.spec.n_actions

    def _derive(
        self, shift: torch.Tensor, cohesion: torch.Tensor, mask: torch.Tensor, episode: torch.Tensor
    ) -> tuple[torch.Tensor, scoring.EpisodeTables]:
        """What a TD update does not change, from the stored |Delta delta|, max(0, I), valid
        steps and episodes: the tactical term of eq. (5) per step and the episodes' tables."""
        c = self.config
        tactical = c.lambda_delta * shift.double() + c.lambda_moran * cohesion.double()
        return tactical, scoring.episode_tables(mask, episode)

    def _masses(
        self, td: torch.Tensor, tactical: torch.Tensor, tables: scoring.EpisodeTables, episode: torch.Tensor
    ) -> scoring.EpisodeMasses:
        """Eq. (5) per step (or Algorithm 1 line 20's product) from ``|TD|`` and the tactical
        term, then each episode's mass (float64)."""
        c = self.config
        value = td if c.td_exponent == 1 else td.pow(c.td_exponent)
        if not c.spatial_priority:  # ablation: |TD|^alpha alone (trajectory-level PER)
            step = value
        elif c.priority_form == "sum":
            step = value + tactical
        else:
            step = value * tactical
        return scoring.masses_from_tables(step, tables, episode, c.priority_exponent, c.eps)

    def _store(
        self, slots: torch.Tensor, masses: scoring.EpisodeMasses, tables: scoring.EpisodeTables
    ) -> None:
        # index_put_ (as ``x[slots] = v``, the last of repeated slots wins, without Python's
        # indexing overhead)
        self._step_mass.index_put_((slots,), masses.step)
        self._ep_mass.index_put_((slots,), masses.episode)
        self._min_mass.index_put_((slots,), masses.minimum)
        if tables.count is not None:  # an update on the stored valid steps leaves it as it is
            self._episodes.index_put_((slots,), tables.count)

    def _require_sampler(self) -> PrioritizedSampler:
        require_configured(self.sampler, "shep")
        return self.sampler

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        sampler = self._require_sampler()
        return versioned(
            {
                "sampler": sampler.state_dict(),
                "shift": self._shift.clone(),
                "cohesion": self._cohesion.clone(),
                "mask": self._mask.clone(),
                "episode": self._episode.clone(),
                "step_mass": self._step_mass.clone(),
                "episode_mass": self._ep_mass.clone(),
                "episodes": self._episodes.clone(),
                "min_mass": self._min_mass.clone(),
                "max_td": self._max_td.clone(),
                "env_steps": counter(self.env_steps),
                "her_credit": self.her_credit,
                "reward_scale": self._reward_scale.clone(),
            }
        )

    def check_state(self, state: Any) -> dict[str, Any]:
        """Validate a :meth:`state_dict` (keys, shapes, dtypes, values) without changing
        anything; returns what :meth:`load_state_dict` assigns."""
        sampler = self._require_sampler()
        state = require_keys("shep", read_versioned(state, "shep"), STATE_KEYS)
        cap, t = self.spec.capacity, self.spec.max_steps
        new_sampler = sampler.check_state(state["sampler"])
        new = {
            "shift": state_tensor("shep", state, "shift", [cap, t], check="finite"),
            "cohesion": state_tensor("shep", state, "cohesion", [cap, t], check="finite_nonnegative"),
            "mask": state_tensor("shep", state, "mask", [cap, t], "bool"),
            "max_td": state_tensor("shep", state, "max_td", [], check="finite_nonnegative"),
        }
        if "episode" in state:
            new["episode"] = state_tensor("shep", state, "episode", [cap, t], "integer")
            check_values([("shep state['episode']", new["episode"], "below", t)])
        tables = ("step_mass", "episodes", "min_mass")
        if any(k in state for k in tables):
            require_keys("shep", state, tables)
            new["step_mass"] = state_tensor("shep", state, "step_mass", [cap, t], check="finite_nonnegative")
            new["episodes"] = state_tensor("shep", state, "episodes", [cap], check="finite_nonnegative")
            new["min_mass"] = state_tensor("shep", state, "min_mass", [cap], check="nonnegative")
            if "episode_mass" in state:
                new["episode_mass"] = state_tensor(
                    "shep", state, "episode_mass", [cap, t], check="finite_nonnegative"
                )
        env_steps = state_counter("shep", state, "env_steps", sampler.device)
        her_credit = state.get("her_credit", 0.0)
        check_range("shep state['her_credit']", her_credit)
        if "reward_scale" in state:
            new["reward_scale"] = state_tensor("shep", state, "reward_scale", [], check="finite_nonnegative")
        new.update(sampler=new_sampler, env_steps=env_steps, her_credit=float(her_credit))
        return new

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`: validated whole first (keys, shapes, dtypes, values),
        then assigned, so on any error the plugin is exactly as before."""
        new = self.check_state(state)
        sampler = self.sampler
        device = self._max_td.device
        sampler._assign_state(new["sampler"])
        self._shift.copy_(new["shift"])
        self._cohesion.copy_(new["cohesion"])
        self._mask.copy_(new["mask"])
        self._episode.copy_(new.get("episode", torch.zeros_like(self._episode)))
        self._max_td = new["max_td"].to(device, self._max_td.dtype).clone()
        self.env_steps = new["env_steps"]
        self.her_credit = new["her_credit"]
        self._reward_scale = (
            new.get("reward_scale", torch.zeros(())).to(device, self._reward_scale.dtype).clone()
        )
        self._last_descriptors = None
        self._checked = None
        tactical, tables = self._derive(self._shift, self._cohesion, self._mask, self._episode)
        self._tactical.copy_(tactical)
        self._share.copy_(tables.share)
        self._absent.copy_(tables.absent)
        if "step_mass" in new:
            self._step_mass.copy_(new["step_mass"])
            self._episodes.copy_(new["episodes"])
            self._min_mass.copy_(new["min_mass"])
            if "episode_mass" in new:
                self._ep_mass.copy_(new["episode_mass"])
            else:  # saved before it was kept: a step's mass over its share
                share = self._share
                self._ep_mass.copy_(torch.where(share > 0, self._step_mass / share.clamp_min(1e-300), 0.0))
        else:  # format 0: one episode per row
            size = len(sampler)
            self._step_mass.zero_()
            self._ep_mass.zero_()
            self._episodes.zero_()
            self._min_mass.fill_(torch.inf)
            counts = self._mask[:size].sum(-1).clamp_min(1).double()
            row = sampler.priorities.unsqueeze(1) * self._mask[:size]
            self._step_mass[:size] = row / counts.unsqueeze(1)
            self._ep_mass[:size] = row
            self._episodes[:size] = 1.0
            self._min_mass[:size] = sampler.priorities
