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

from hetplug._checks import check_bool, check_device, check_int, check_mapping, check_tensor

if TYPE_CHECKING:
    from hetplug.sharing.slots import ParameterSlots

_STEP_FIELDS = ("reward", "done", "mask", "td_error", "success")
_AGENT_FIELDS = ("obs", "actions", "positions", "alive")
#: the dtype kind of each field (hetplug._checks.check_tensor); a mask given as floats or
#: integers is refused (TypeError) rather than guessed at
_KINDS = {
    "done": "bool",
    "obs": "bool_or_real",
    "state": "bool_or_real",
    "actions": "real",
    "positions": "real",
    "alive": "bool_or_real",
    "opponent_positions": "real",
    "opponent_alive": "bool_or_real",
    "opponent_actions": "real",
    "td_error": "real",
    "success": "bool_or_real",
}


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
            check_int(name, getattr(self, name), 1)
        check_device("device", self.device)
        if self.n_actions is not None:
            check_int("n_actions", self.n_actions, 1)
        if not isinstance(self.dtype, torch.dtype):
            raise TypeError(f"dtype must be a floating torch.dtype, got dtype={self.dtype!r}")
        if not self.dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating torch.dtype, got dtype={self.dtype!r}")
        if self.total_env_steps is not None:
            check_int("total_env_steps", self.total_env_steps, 1)
        check_bool("rollout_storage", self.rollout_storage)
        check_mapping("extra", self.extra, "a dict of host facts")

    def diff(self, other: HostSpec) -> str | None:
        """The first field where ``other`` differs from this spec, as ``"name=value"``, or None."""
        for f in dataclasses.fields(self):
            if getattr(self, f.name) != getattr(other, f.name):
                return f.name
        return None


def check_spec(spec: Any, plugin: str) -> HostSpec:
    """``spec`` if it is a :class:`HostSpec` (``TypeError`` for a dict or anything else)."""
    if not isinstance(spec, HostSpec):
        raise TypeError(
            f"spec must be a hetplug.HostSpec (build it with hetplug.HostSpec(n_agents=..., max_steps=..., "
            f"capacity=...)), got spec={spec!r} for the {plugin} plugin"
        )
    return spec


def check_reconfigure(old: HostSpec | None, new: HostSpec, plugin: str) -> bool:
    """For ``hetplug_configure``: True when the plugin was already configured with this very
    spec (the call is then a no-op), False on a first call; ``ValueError`` naming the first
    field that differs when it was configured with another spec."""
    check_spec(new, plugin)
    if old is None:
        return False
    name = old.diff(new)
    if name is None:
        return True
    raise ValueError(
        f"{name} must equal the {name}={getattr(old, name)!r} this {plugin} plugin was configured with "
        f"(hetplug_configure was already called), got {name}={getattr(new, name)!r}: a plugin serves "
        "one host; build a new plugin manager (hetplug.get_plugin_manager) for another"
    )


def check_batch(batch: Any, plugin: str) -> TrajectoryBatch:
    """``batch`` if it is a :class:`TrajectoryBatch` (``TypeError`` otherwise)."""
    if not isinstance(batch, TrajectoryBatch):
        raise TypeError(
            f"batch must be a hetplug.TrajectoryBatch, got batch={type(batch).__name__} for the {plugin} plugin"
        )
    return batch


def check_max_steps(batch: TrajectoryBatch, spec: HostSpec) -> None:
    """``ValueError`` when the batch is longer than the host said its trajectories are."""
    if batch.max_steps > spec.max_steps:
        raise ValueError(
            f"batch.max_steps must be <= the host's max_steps={spec.max_steps} (HostSpec), got "
            f"batch.max_steps={batch.max_steps}"
        )


def host_object(host: Any, name: str, plugin: str, what: str, how: str) -> Any:
    """``host.<name>`` for a plugin's ``hetplug_bind``: ``TypeError`` unless ``host`` is a
    :class:`HostObjects`; ``ValueError`` saying ``how`` to get one when the host gave none."""
    if not isinstance(host, HostObjects):
        raise TypeError(f"host must be a hetplug.HostObjects, got host={host!r}")
    value = getattr(host, name)
    if value is None:
        raise ValueError(f"the {plugin} plugin needs the host's {what} (HostObjects.{name}): {how}")
    return value


def require_configured(state: Any, plugin: str) -> None:
    """``RuntimeError`` saying what to do when a hook runs before ``hetplug_configure``."""
    if state is None:
        raise RuntimeError(
            f"the {plugin} plugin is not configured: call "
            "pm.hook.hetplug_configure.call_historic(kwargs={'spec': hetplug.HostSpec(...)}) first"
        )


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
    reads and raises a ``ValueError`` naming a missing one. Construction checks types,
    dtypes and shapes (free: no host synchronisation): ``TypeError`` for a float or integer
    ``mask`` or ``done`` (convert with ``.bool()``), a non-floating ``reward`` or a bool
    where numbers are expected; ``ValueError`` for shapes, and for ``T = 0`` (a trajectory
    has at least one step). ``B = 0`` is allowed: every built-in plugin treats an empty
    batch as a no-op. Values (NaN, ranges) are checked by the plugins that read them.

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
        check_tensor("reward", self.reward, (2, 3), "floating")
        B, T = self.reward.shape[:2]
        if T < 1:
            raise ValueError(
                f"reward must hold at least one step (T >= 1), got reward of shape {tuple(self.reward.shape)}"
            )
        check_tensor("mask", self.mask, 2, "bool")
        if tuple(self.mask.shape) != (B, T):
            raise ValueError(
                f"mask must have shape [B, T] = [{B}, {T}], got mask of shape {tuple(self.mask.shape)}"
            )
        check_mapping("extra", self.extra, "a dict of [B, T, ...] tensors")
        for key, value in self.extra.items():
            if not isinstance(key, str):
                raise TypeError(f"extra's keys must be names (str), got extra key {key!r}")
            check_tensor(f"extra[{key!r}]", value)
        for name, value in self.tensors().items():
            if name in _KINDS:
                check_tensor(name, value, dtype=_KINDS[name])
            if name == "success":
                if tuple(value.shape) not in ((B,), (B, T)):
                    raise ValueError(
                        f"success must have shape [B] = [{B}] or [B, T] = [{B}, {T}], "
                        f"got success of shape {tuple(value.shape)}"
                    )
                continue
            if value.dim() < 2 or tuple(value.shape[:2]) != (B, T):
                raise ValueError(
                    f"{name} must have leading dims [B, T] = [{B}, {T}], got {name} of shape {tuple(value.shape)}"
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
