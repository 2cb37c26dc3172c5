"""The ``hetdps`` plugin: heterogeneity distances drive dynamic parameter sharing.

Hooks (HetDPS Algorithm 1):

* ``hetplug_trajectories_collected``: builds, for each distance the grouping uses
  (``grouping_distance``; by default the meta-transition of Appendix G, the paper's
  choice), each agent's (x, y) samples from the batch and adds them to that distance's
  sample pool. The meta-transition: x = (local state, action), y = (next local state, next
  observation, reward replicated). Fields read: ``obs [B, T, N, O]``, ``actions [B, T, N]``
  (discrete, one-hot encoded with ``HostSpec.n_actions``) or ``[B, T, N, A]``,
  ``reward [B, T]`` or ``[B, T, N]``, ``mask``, ``done`` (optional), ``state [B, T, S]``
  (the model-based distances), and ``extra["local_state"] [B, T, N, L]`` when the host
  has local states (otherwise the observation stands in for the local state, and the
  meta-transition leaves the next local state out). Pairs (t, t+1) are kept where both
  steps are valid and t is not terminal.
* ``hetplug_after_update``: every ``interval`` updates, fits each distance's CVAE on its
  pool, computes the ``[N, N]`` distance matrix the grouping uses (one type's, or a
  weighted sum of several), regroups the agents and, when the host bound its
  :class:`~hetplug.sharing.ParameterSlots`, applies the plan in place. Returns
  ``hetdps/plan`` (a :class:`SharingPlan`), ``hetdps/distance`` and scalars.

The host routes agents with ``pm.get_plugin("hetdps").routing()`` (or lets
``ParameterSlots`` rewrite its routing buffer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from hetplug._checks import check_int, check_mapping, config_from_dict, raise_problems, tensor_problems
from hetplug.config import did_you_mean
from hetplug.distance.cvae import CVAEConfig
from hetplug.distance.estimator import DistanceEstimator
from hetplug.distance.features import HETEROGENEITY_TYPES, build_features
from hetplug.hookspecs import hookimpl
from hetplug.sharing.manager import DynamicSharingManager, SharingConfig
from hetplug.sharing.slots import ParameterSlots
from hetplug.state import read_versioned, require_keys, versioned
from hetplug.types import (
    HostObjects,
    HostSpec,
    TrajectoryBatch,
    check_batch,
    check_reconfigure,
    host_object,
    require_configured,
)


@dataclass
class HetDPSConfig:
    """Settings of the ``hetdps`` plugin (sharing fields as in :class:`SharingConfig`)."""

    interval: int = 100
    start: str = "full"
    merge_mode: str = "weighted"
    preference: str | float = "median"
    homogeneous_below: float = 0.0
    damping: float = 0.5
    retry_damping: float | None = 0.9
    n_slots: int | None = None
    cvae: dict[str, Any] = field(default_factory=dict)
    """:class:`~hetplug.distance.CVAEConfig` fields (hidden, latent_dim, kl_weight, epochs, ...)."""
    pool_capacity: int = 10_000
    """Time steps (each with all agents) the sample pool keeps."""
    fit_samples: int | None = 512
    """Time steps drawn from the pool for each refit (None: the whole pool)."""
    distance_samples: int = 1024
    """Monte-Carlo samples of x for each distance matrix."""
    reward_repeat: int | str = "auto"
    grouping_distance: str | dict[str, float] = "meta"
    """The heterogeneity distance the agents are grouped on: ``"meta"`` (default: the
    model-free meta-transition distance, Appendix G, which the paper groups on), one of the
    other types of Table 1 (``"observation"``, ``"response"``, ``"effect"``,
    ``"objective"``: model-based, they need the global state; ``"policy"``: model-free,
    observation -> action), or a mapping ``{type: weight}`` whose weighted sum of matrices
    is clustered (e.g. ``{meta: 1.0, policy: 0.5}``)."""
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("seed", self.seed, 0)
        self.sharing_config()  # validates the sharing fields
        self.grouping_weights()  # validates grouping_distance
        check_mapping("cvae", self.cvae, "a mapping of CVAEConfig fields")
        config_from_dict(CVAEConfig, self.cvae, "hetdps.cvae")
        check_int("pool_capacity", self.pool_capacity, 1)
        if self.fit_samples is not None:
            check_int("fit_samples", self.fit_samples, 1)
        check_int("distance_samples", self.distance_samples, 1)
        if not (isinstance(self.reward_repeat, str) and self.reward_repeat == "auto"):
            if isinstance(self.reward_repeat, str):
                raise ValueError(
                    f"reward_repeat must be 'auto' or an integer >= 1, got reward_repeat={self.reward_repeat!r}"
                )
            check_int("reward_repeat", self.reward_repeat, 1)
        check_int("seed", self.seed, 0)

    def grouping_weights(self) -> dict[str, float]:
        """``grouping_distance`` as ``{type: weight}``."""
        value = self.grouping_distance
        weights = {value: 1.0} if isinstance(value, str) else value
        if not isinstance(weights, dict):
            raise TypeError(
                f"grouping_distance must be a heterogeneity type or a mapping {{type: weight}}, "
                f"got grouping_distance={value!r}"
            )
        if not weights:
            raise ValueError(
                f"grouping_distance must be a heterogeneity type or a mapping {{type: weight}}, "
                f"got grouping_distance={value!r}"
            )
        for kind, weight in weights.items():
            if kind not in HETEROGENEITY_TYPES:
                raise ValueError(
                    f"grouping_distance: unknown heterogeneity type {kind!r}"
                    f"{did_you_mean(kind, list(HETEROGENEITY_TYPES))}; types: {', '.join(HETEROGENEITY_TYPES)}"
                )
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise TypeError(
                    f"grouping_distance[{kind!r}] must be a number > 0, got grouping_distance[{kind!r}]={weight!r}"
                )
            if not weight > 0 or weight == float("inf"):
                raise ValueError(
                    f"grouping_distance[{kind!r}] must be a finite number > 0, got grouping_distance[{kind!r}]={weight!r}"
                )
        return {k: float(w) for k, w in weights.items()}

    def sharing_config(self) -> SharingConfig:
        return SharingConfig(
            start=self.start,
            n_slots=self.n_slots,
            interval=self.interval,
            merge_mode=self.merge_mode,
            preference=self.preference,
            homogeneous_below=self.homogeneous_below,
            damping=self.damping,
            retry_damping=self.retry_damping,
            random_state=self.seed,
        )


def transition_fields(
    batch: TrajectoryBatch, n_actions: int | None, check: bool = True
) -> dict[str, torch.Tensor | None]:
    """The per-step fields of the valid (t, t+1) pairs of ``batch``, as
    :func:`~hetplug.distance.build_features` names them: ``[S, N, d]`` per agent or
    ``[S, d]`` global (``state``, ``next_state``: None without a global state).

    One host synchronisation (selecting the valid pairs); with ``check``, the values the
    samples are built from are validated in that same one (NaN or inf observations, states
    and rewards, discrete actions outside ``[0, n_actions)``): a bad value empties the
    selection, and only an empty selection reads the checks back to say which.
    """
    check_batch(batch, "hetdps")
    if batch.obs is None or batch.actions is None:
        raise ValueError("the hetdps plugin needs batch.obs [B, T, N, O] and batch.actions")
    obs, actions = batch.obs, batch.actions
    if obs.dim() != 4:
        raise ValueError(f"batch.obs must be [B, T, N, O], got batch.obs of shape {tuple(obs.shape)}")
    n = obs.shape[2]
    if actions.dim() == 3 and n_actions is None:
        raise ValueError("discrete batch.actions [B, T, N] need HostSpec.n_actions to be one-hot encoded")
    checks = [
        ("batch.obs", obs, "finite", None),
        ("batch.state", batch.state, "finite", None),
        ("batch.reward", batch.reward, "finite", None),
        ("batch.extra['local_state']", batch.extra.get("local_state"), "finite", None),
        ("batch.actions", actions, "finite", None)
        if actions.is_floating_point()
        else ("batch.actions", actions, "below", n_actions),
    ]
    flag = tensor_problems(checks) if check else None
    valid = batch.mask[:, :-1] & batch.mask[:, 1:]
    if batch.done is not None:
        valid = valid & ~batch.done[:, :-1].bool()
    if flag is not None:  # a bad value empties the selection: one synchronisation for both
        valid = valid & flag.to(valid.device)
    rows = valid.reshape(-1).nonzero().squeeze(-1)
    if flag is not None and rows.numel() == 0:
        raise_problems(flag, checks)  # bad values, or no valid pair at all (a no-op)
    if not obs.is_floating_point():
        obs = obs.float()
    if actions.dim() == 3:
        actions = F.one_hot(actions.long(), n_actions).to(obs.dtype)
    local = batch.extra.get("local_state")
    reward = batch.reward if batch.reward.dim() == 3 else batch.reward.unsqueeze(-1).expand(-1, -1, n)

    def now(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t[:, :-1].reshape(-1, *t.shape[2:])[rows]

    def nxt(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t[:, 1:].reshape(-1, *t.shape[2:])[rows]

    own = local if local is not None else obs  # the observation stands in for the local state
    return {
        "obs": now(obs),
        "local_state": now(own),
        "action": now(actions),
        "joint_action": now(actions),
        "next_local_state": nxt(own),
        "next_obs": nxt(obs),
        "reward": now(reward).unsqueeze(-1),
        "state": now(batch.state),
        "next_state": nxt(batch.state),
        "has_local_state": local is not None,
    }


def distance_samples(
    kind: str, fields: dict[str, Any], n_agents: int, reward_repeat: int | str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x [S, N, x_dim], y [S, N, y_dim])`` of heterogeneity type ``kind`` from
    :func:`transition_fields`. Without local states the meta-transition leaves the next
    local state out (the next observation is already in y)."""
    preset = HETEROGENEITY_TYPES[kind]
    for name in ("state", "next_state"):
        if name in preset.x + preset.y and fields[name] is None:
            raise ValueError(
                f"hetdps.grouping_distance: {kind!r} needs the global state (batch.state [B, T, S]); "
                f"this host's batches have none"
            )
    chosen = {name: fields[name] for name in preset.x + preset.y}
    if kind == "meta" and not fields["has_local_state"]:
        chosen["next_local_state"] = None
    return build_features(kind, chosen, n_agents, reward_repeat)


def meta_transitions(
    batch: TrajectoryBatch, n_actions: int | None, reward_repeat: int | str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Meta-transition samples ``(x [S, N, x_dim], y [S, N, y_dim])`` from a trajectory batch."""
    fields = transition_fields(batch, n_actions)
    return distance_samples("meta", fields, batch.obs.shape[2], reward_repeat)


def _mean_off_diagonal(distance: torch.Tensor) -> float:
    return float(distance.sum()) / max(1, distance.numel() - distance.shape[0])


class HetDPSPlugin:
    """HetDPS as a hetplug plugin (name ``hetdps``)."""

    config_class = HetDPSConfig

    def __init__(self, config: HetDPSConfig | None = None) -> None:
        self.config = config or HetDPSConfig()
        self.weights = self.config.grouping_weights()
        self.spec: HostSpec | None = None
        self.manager: DynamicSharingManager | None = None
        self.estimators: dict[str, DistanceEstimator] = {}
        self.slots: ParameterSlots | None = None
        self.last_distance: torch.Tensor | None = None

    @property
    def estimator(self) -> DistanceEstimator | None:
        """The first grouping distance's estimator (the only one by default: ``meta``)."""
        return self.estimators.get(next(iter(self.weights)))

    @hookimpl
    def hetplug_configure(self, spec: HostSpec) -> None:
        if check_reconfigure(self.spec, spec, "hetdps"):
            return  # configured with this very spec already
        self.manager = DynamicSharingManager(spec.n_agents, self.config.sharing_config())
        self.spec = spec

    @hookimpl
    def hetplug_bind(self, host: HostObjects) -> None:
        how = "build the policy from hetplug's slot model, whose agents can be regrouped in place"
        self.bind(host_object(host, "parameter_slots", "hetdps", "parameter slots", how))

    def bind(self, slots: ParameterSlots) -> None:
        """Give the plugin the host's slot parameters; plans are then applied in place."""
        if not isinstance(slots, ParameterSlots):
            raise TypeError(
                f"slots must be a hetplug.sharing.ParameterSlots, got slots={type(slots).__name__}"
            )
        if self.manager is not None and slots.n_slots != self.manager.n_slots:
            raise ValueError(
                f"slots.n_slots must equal the manager's n_slots={self.manager.n_slots}, got slots.n_slots={slots.n_slots}"
            )
        self.slots = slots

    def routing(self, device: torch.device | str | None = None) -> torch.Tensor:
        """``[N]`` int64 agent -> slot, as of the latest regrouping."""
        self._require_configured()
        return self.manager.routing(device if device is not None else self.spec.device)

    def _require_configured(self) -> None:
        require_configured(self.manager, "hetdps")

    def _build_estimator(self, kind: str, x_dim: int, y_dim: int) -> DistanceEstimator:
        c = self.config
        return DistanceEstimator(
            self.spec.n_agents, x_dim, y_dim, HETEROGENEITY_TYPES[kind].mode, c.cvae,
            c.pool_capacity, c.fit_samples, self.spec.device, c.seed,
        )  # fmt: skip

    @hookimpl
    def hetplug_trajectories_collected(self, batch: TrajectoryBatch) -> None:
        self._require_configured()
        check_batch(batch, "hetdps")
        if batch.batch_size == 0 or batch.max_steps < 2:
            return None  # no (t, t+1) pair: a no-op
        if batch.obs is not None and batch.obs.dim() == 4 and batch.obs.shape[2] != self.spec.n_agents:
            raise ValueError(
                f"batch.obs must have n_agents={self.spec.n_agents} agents in dim 2 (HostSpec), got "
                f"batch.obs of shape {tuple(batch.obs.shape)}"
            )
        fields = transition_fields(batch, self.spec.n_actions)  # values checked here
        samples = {}
        for kind in self.weights:  # every type's samples first, then the pools change
            samples[kind] = distance_samples(kind, fields, batch.obs.shape[2], self.config.reward_repeat)
        for kind, (x, y) in samples.items():
            if x.shape[0] == 0:
                continue  # no valid (t, t+1) pair (an all-false mask): a no-op
            if kind not in self.estimators:
                self.estimators[kind] = self._build_estimator(kind, x.shape[-1], y.shape[-1])
            self.estimators[kind].add(x, y, check_values=False)  # built from checked fields
        return None

    @hookimpl
    def hetplug_after_update(self, update: int) -> dict[str, Any] | None:
        self._require_configured()
        check_int("update", update, 0)
        if not self.manager.due(update):
            return None
        if len(self.estimators) < len(self.weights) or any(
            len(e.pool) == 0 for e in self.estimators.values()
        ):
            return {"hetdps/skipped": 1.0}
        out: dict[str, Any] = {}
        distance, losses = 0.0, []
        for kind, weight in self.weights.items():  # eq. (3) per type, then their weighted sum
            estimator = self.estimators[kind]
            losses.append(estimator.fit()["loss"])
            d = estimator.distance_matrix(n_samples=self.config.distance_samples)
            distance = distance + weight * d
            if len(self.weights) > 1:
                out[f"hetdps/{kind}/mean_distance"] = _mean_off_diagonal(d)
        plan = self.manager.update(distance)
        if self.slots is not None:
            self.slots.apply(plan)
        self.last_distance = distance
        return {
            "hetdps/plan": plan,
            "hetdps/distance": distance,
            "hetdps/n_groups": float(plan.n_groups),
            "hetdps/cvae_loss": sum(losses) / len(losses),
            "hetdps/mean_distance": _mean_off_diagonal(distance),
            **out,
        }

    def state_dict(self) -> dict[str, Any]:
        self._require_configured()
        state: dict[str, Any] = versioned({"manager": self.manager.state_dict()})
        state["estimators"] = {kind: e.state_dict() for kind, e in self.estimators.items()}
        state["dims"] = {kind: (e.pool.x_dim, e.pool.y_dim) for kind, e in self.estimators.items()}
        return state

    def check_state(self, state: Any) -> dict[str, Any]:
        """Validate a :meth:`state_dict` without changing anything; returns what
        :meth:`load_state_dict` assigns (the manager's values and new estimators)."""
        self._require_configured()
        state = require_keys("hetdps", read_versioned(state, "hetdps"), ("manager",))
        manager = self.manager.check_state(state["manager"])
        saved = state.get("estimators", {})
        dims = state.get("dims", {})
        if "estimator" in state:  # saved before grouping_distance: the meta-transition's
            saved, dims = {"meta": state["estimator"]}, {"meta": state["dims"]}
        check_mapping("hetdps state['estimators']", saved, "a mapping {distance type: estimator state}")
        check_mapping("hetdps state['dims']", dims, "a mapping {distance type: (x_dim, y_dim)}")
        if set(saved) - set(self.weights):
            raise ValueError(
                f"hetdps state holds distances {sorted(saved)} but this run groups on "
                f"{sorted(self.weights)} (grouping_distance)"
            )
        estimators = {}
        for kind, estimator_state in saved.items():
            pair = dims.get(kind)
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(f"hetdps state['dims'][{kind!r}] must be (x_dim, y_dim), got {pair!r}")
            for name, v in zip(("x_dim", "y_dim"), pair, strict=True):
                check_int(f"hetdps state['dims'][{kind!r}] {name}", v, 1)
            estimator = self._build_estimator(kind, *pair)
            estimator.load_state_dict(estimator_state)  # a new object: a refusal changes nothing here
            estimators[kind] = estimator
        return {"manager": manager, "estimators": estimators}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the grouping and the estimators; the slot parameters are the host's (saved
        with its model). Validated whole first: on any error the plugin is as before."""
        new = self.check_state(state)
        self.manager._assign_state(new["manager"])
        self.estimators = new["estimators"]
        self.last_distance = None  # a report of the latest regrouping, not state
        if self.slots is not None:
            for r in self.slots.routing:
                r.copy_(self.manager.routing(r.device))
