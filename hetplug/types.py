"""Plain types that cross the host <-> plugin boundary.

Shapes are the contract. ``B`` trajectories, ``T`` steps, ``N`` agents, ``K`` opponents,
``D`` position dimensions. Hosts (adapters) fill these from their own batches; plugins
never see a framework type.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from hetplug.sharing.slots import ParameterSlots

_STEP_FIELDS = ("reward", "done", "mask", "td_error", "success")
_AGENT_FIELDS = ("obs", "actions", "positions", "alive")


@dataclass(frozen=True)
class HostSpec:
    """What a host tells plugins once, through ``hetplug_configure``.

    Attributes:
        n_agents: number of learning agents N.
        max_steps: the longest trajectory T the host stores (its padded episode length).
        capacity: how many trajectories the host's replay (or rollout) storage holds.
        device: where the host keeps its tensors; plugins allocate their state there.
        n_actions: number of discrete actions, or None for continuous actions.
        dtype: the floating dtype of the host's tensors: IS weights, probabilities and
            rewards that plugins hand back come in it.
        total_env_steps: how long the run is, in environment steps (BenchMARL's
            ``max_n_frames``, EPyMARL's ``t_max``), or None when the host cannot say;
            plugins with schedules anneal over it.
        rollout_storage: the host's storage holds only the latest collection (on-policy
            rollouts kept one at a time): a prioritiser forgets every stored item when the
            next batch is collected (``hetplug_trajectories_collected``), and the slots it
            returns start again at 0.
        extra: free-form host facts (framework name, algorithm, ...). ``"gamma"``: the
            host's discount (BenchMARL's experiment ``gamma``, EPyMARL's ``args.gamma``);
            plugins that discount rewards themselves use it (the ``shppo`` plugin's R).
    """

    n_agents: int
    max_steps: int
    capacity: int
    device: torch.device | str = "cpu"
    n_actions: int | None = None
    dtype: torch.dtype = torch.float32
    total_env_steps: int | None = None
    rollout_storage: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("n_agents", "max_steps", "capacity"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {name}={value!r}")
        if self.n_actions is not None and (not isinstance(self.n_actions, int) or self.n_actions < 1):
            raise ValueError(f"n_actions must be None or an integer >= 1, got n_actions={self.n_actions!r}")
        if not isinstance(self.dtype, torch.dtype) or not self.dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating torch.dtype, got dtype={self.dtype!r}")
        if self.total_env_steps is not None and (
            isinstance(self.total_env_steps, bool)
            or not isinstance(self.total_env_steps, int)
            or self.total_env_steps < 1
        ):
            raise ValueError(
                f"total_env_steps must be None or an integer >= 1, got total_env_steps={self.total_env_steps!r}"
            )
        if not isinstance(self.rollout_storage, bool):
            raise ValueError(f"rollout_storage must be a bool, got rollout_storage={self.rollout_storage!r}")


@dataclass(frozen=True)
class HostObjects:
    """The host's own objects, handed to every plugin once by ``hetplug_bind``.

    Attributes:
        latent_net: SHPPO: the :class:`~hetplug.shppo.LatentNet` the host's actor runs at
            every step (the ``shppo`` plugin trains it with its own optimiser).
        parameter_slots: HetDPS: the :class:`~hetplug.sharing.ParameterSlots` of the host's
            slot model (parameters, optimiser state, target copies, routing), which the
            ``hetdps`` plugin regroups in place.
        extra: anything else a host offers third-party plugins, by name.
    """

    latent_net: torch.nn.Module | None = None
    parameter_slots: ParameterSlots | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrajectoryBatch:
    """B trajectories of T steps for N agents, as plain tensors.

    Only ``reward`` and ``mask`` are required; each plugin states which other fields it
    reads and raises a ``ValueError`` naming a missing one.

    Attributes:
        reward: ``[B, T]`` team reward, or ``[B, T, N]`` per-agent rewards.
        mask: ``[B, T]`` bool, True for valid (filled) steps. Padding comes last.
        done: ``[B, T]`` bool, True where the episode terminated.
        obs: ``[B, T, N, O]`` observations.
        state: ``[B, T, S]`` global state.
        actions: ``[B, T, N]`` int64 discrete actions, or ``[B, T, N, A]`` continuous ones.
        positions: ``[B, T, N, D]`` agent positions (for spatial descriptors).
        alive: ``[B, T, N]`` bool, agents still in play.
        opponent_positions: ``[B, T, K, D]`` positions of opponents, if the task has any.
        opponent_alive: ``[B, T, K]`` bool.
        opponent_actions: ``[B, T, K]`` discrete opponent actions, if known.
        td_error: ``[B, T]`` or ``[B, T, N]`` TD errors, when the host already has them.
        success: ``[B]`` bool, whether each row's episode succeeded, or ``[B, T]`` for rows
            holding several episodes: whether the episode holding each step succeeded
            (an episode still running at the row's end counts as not succeeded). Used by
            Group-HER's ``her_only_failed``.
        extra: host fields with leading ``[B, T]`` dims that plugins carry along untouched
            (for example ``avail_actions``), so relabelled copies stay complete.
    """

    reward: torch.Tensor
    mask: torch.Tensor
    done: torch.Tensor | None = None
    obs: torch.Tensor | None = None
    state: torch.Tensor | None = None
    actions: torch.Tensor | None = None
    positions: torch.Tensor | None = None
    alive: torch.Tensor | None = None
    opponent_positions: torch.Tensor | None = None
    opponent_alive: torch.Tensor | None = None
    opponent_actions: torch.Tensor | None = None
    td_error: torch.Tensor | None = None
    success: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.reward, torch.Tensor) or self.reward.dim() not in (2, 3):
            raise ValueError(
                f"reward must be a [B, T] or [B, T, N] tensor, got "
                f"{getattr(self.reward, 'shape', type(self.reward).__name__)}"
            )
        B, T = self.reward.shape[:2]
        if not isinstance(self.mask, torch.Tensor) or tuple(self.mask.shape) != (B, T):
            raise ValueError(
                f"mask must be a [B, T] = [{B}, {T}] tensor, got "
                f"{tuple(getattr(self.mask, 'shape', ())) or type(self.mask).__name__}"
            )
        for name, value in self.tensors().items():
            if name == "success":
                if tuple(value.shape) not in ((B,), (B, T)):
                    raise ValueError(
                        f"success must have shape [B] = [{B}] or [B, T] = [{B}, {T}], got {tuple(value.shape)}"
                    )
                continue
            if value.dim() < 2 or tuple(value.shape[:2]) != (B, T):
                raise ValueError(
                    f"{name} must have leading dims [B, T] = [{B}, {T}], got {tuple(value.shape)}"
                )
        n = None
        for name in _AGENT_FIELDS:
            value = getattr(self, name)
            if value is None or value.dim() < 3:
                continue
            if n is None:
                n = value.shape[2]
            elif value.shape[2] != n:
                raise ValueError(f"{name} has {value.shape[2]} agents in dim 2 but another field has {n}")

    @property
    def batch_size(self) -> int:
        return self.reward.shape[0]

    @property
    def max_steps(self) -> int:
        return self.reward.shape[1]

    @property
    def device(self) -> torch.device:
        return self.reward.device

    def tensors(self) -> dict[str, torch.Tensor]:
        """All tensor fields that are set, ``extra`` entries prefixed with ``extra.``."""
        out = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "extra" and getattr(self, f.name) is not None
        }
        out.update({f"extra.{k}": v for k, v in self.extra.items()})
        return out

    def replace(self, **changes: Any) -> TrajectoryBatch:
        """A copy with some fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)

    def select(self, rows: torch.Tensor) -> TrajectoryBatch:
        """The trajectories at ``rows`` (an index or bool tensor over B), as new tensors."""
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                changes["extra"] = {k: v[rows] for k, v in value.items()}
            elif value is not None:
                changes[f.name] = value[rows]
        return dataclasses.replace(self, **changes)

    @staticmethod
    def concat(batches: list[TrajectoryBatch]) -> TrajectoryBatch:
        """Stack batches along B; they must set the same fields."""
        if not batches:
            raise ValueError("concat needs at least one TrajectoryBatch")
        first = batches[0]
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(first):
            values = [getattr(b, f.name) for b in batches]
            if f.name == "extra":
                keys = set(values[0])
                if any(set(v) != keys for v in values):
                    raise ValueError("concat: the batches carry different extra keys")
                changes["extra"] = {k: torch.cat([v[k] for v in values]) for k in keys}
            elif all(v is None for v in values):
                continue
            elif any(v is None for v in values):
                raise ValueError(f"concat: field {f.name} is set in some batches but not in others")
            else:
                changes[f.name] = torch.cat(values)
        return dataclasses.replace(first, **changes)


@dataclass(frozen=True)
class CollectedResult:
    """What a plugin returns from ``hetplug_trajectories_collected``.

    Attributes:
        intrinsic_reward: ``[B, T]`` reward the host adds to the environment reward
            (broadcast over agents for per-agent rewards), or None.
        extra_trajectories: relabelled copies the host stores in addition to the
            originals, or None. The originals are never modified.
        metrics: scalars for the host's logger (tensors, not yet synchronised).
    """

    intrinsic_reward: torch.Tensor | None = None
    extra_trajectories: TrajectoryBatch | None = None
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class SampleResult:
    """Indices drawn from a prioritised storage and their importance weights.

    Unpacks as ``indices, weights = result``; ``result.probabilities`` is also there.

    Attributes:
        indices: ``[B]`` int64 storage slots.
        weights: ``[B]`` importance-sampling weights to multiply the per-sample loss by.
        probabilities: ``[B]`` the probabilities the items were drawn with.
        sources: None, except for experience-sharing plugins (``lbs``): then every field
            is ``[N, B]``, row ``i`` is learner ``i``'s mini-batch, and item ``(i, b)`` is
            agent ``sources[i, b]``'s transition at slot ``indices[i, b]``.
        steps: None, or ``[B]`` the step within each slot the plugin chose (SHEP draws an
            episode inside a slot holding several, then a step of it); a host that trains
            on single steps uses it, else draws a valid step uniformly.
    """

    indices: torch.Tensor
    weights: torch.Tensor
    probabilities: torch.Tensor
    sources: torch.Tensor | None = None
    steps: torch.Tensor | None = None

    def __iter__(self):
        """Unpacks as ``indices, weights = sampler.sample(n)``."""
        return iter((self.indices, self.weights))
