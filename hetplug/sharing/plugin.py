"""The ``hetdps`` plugin: heterogeneity distances drive dynamic parameter sharing.

Hooks (HetDPS Algorithm 1):

* ``hetplug_trajectories_collected``: builds each agent's meta-transition (Appendix G)
  from the batch and adds it to the distance estimator's sample pool: x = (local state,
  action), y = (next local state, next observation, reward replicated). Fields read:
  ``obs [B, T, N, O]``, ``actions [B, T, N]`` (discrete, one-hot encoded with
  ``HostSpec.n_actions``) or ``[B, T, N, A]``, ``reward [B, T]`` or ``[B, T, N]``,
  ``mask``, ``done`` (optional), and ``extra["local_state"] [B, T, N, L]`` when the host
  has local states (otherwise the observation stands in for the local state and the
  next local state is left out). Pairs (t, t+1) are kept where both steps are valid and
  t is not terminal.
* ``hetplug_after_update``: every ``interval`` updates, fits the CVAE on the pool, computes
  the ``[N, N]`` meta-transition distance matrix, regroups the agents and, when the host
  bound its :class:`~hetplug.sharing.ParameterSlots`, applies the plan in place. Returns
  ``hetdps/plan`` (a :class:`SharingPlan`), ``hetdps/distance`` and scalars.

The host routes agents with ``pm.get_plugin("hetdps").routing()`` (or lets
``ParameterSlots`` rewrite its routing buffer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from hetplug._checks import check_int, config_from_dict
from hetplug.distance.cvae import CVAEConfig
from hetplug.distance.estimator import DistanceEstimator
from hetplug.distance.features import build_features
from hetplug.hookspecs import hookimpl
from hetplug.sharing.manager import DynamicSharingManager, SharingConfig
from hetplug.sharing.slots import ParameterSlots
from hetplug.state import read_versioned, versioned
from hetplug.types import HostObjects, HostSpec, TrajectoryBatch


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
    seed: int = 0

    def __post_init__(self) -> None:
        self.sharing_config()  # validates the sharing fields
        config_from_dict(CVAEConfig, self.cvae, "hetdps.cvae")
        check_int("pool_capacity", self.pool_capacity, 1)
        if self.fit_samples is not None:
            check_int("fit_samples", self.fit_samples, 1)
        check_int("distance_samples", self.distance_samples, 1)
        if self.reward_repeat != "auto":
            check_int("reward_repeat", self.reward_repeat, 1)
        check_int("seed", self.seed, 0)

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


def meta_transitions(
    batch: TrajectoryBatch, n_actions: int | None, reward_repeat: int | str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Meta-transition samples ``(x [S, N, x_dim], y [S, N, y_dim])`` from a trajectory batch.

    One host synchronisation (selecting the valid (t, t+1) pairs).
    """
    if batch.obs is None or batch.actions is None:
        raise ValueError("the hetdps plugin needs batch.obs [B, T, N, O] and batch.actions")
    obs, actions = batch.obs, batch.actions
    n = obs.shape[2]
    if actions.dim() == 3:
        if n_actions is None:
            raise ValueError("discrete batch.actions [B, T, N] need HostSpec.n_actions to be one-hot encoded")
        actions = F.one_hot(actions.long(), n_actions).to(obs.dtype)
    local = batch.extra.get("local_state")
    reward = batch.reward if batch.reward.dim() == 3 else batch.reward.unsqueeze(-1).expand(-1, -1, n)
    valid = batch.mask[:, :-1] & batch.mask[:, 1:]
    if batch.done is not None:
        valid = valid & ~batch.done[:, :-1].bool()
    rows = valid.reshape(-1).nonzero().squeeze(-1)

    def now(t: torch.Tensor) -> torch.Tensor:
        return t[:, :-1].reshape(-1, *t.shape[2:])[rows]

    def nxt(t: torch.Tensor) -> torch.Tensor:
        return t[:, 1:].reshape(-1, *t.shape[2:])[rows]

    fields = {
        "local_state": now(local if local is not None else obs),
        "action": now(actions),
        "next_local_state": nxt(local) if local is not None else None,
        "next_obs": nxt(obs),
        "reward": now(reward).unsqueeze(-1),
    }
    return build_features("meta", fields, n, reward_repeat)


class HetDPSPlugin:
    """HetDPS as a hetplug plugin (name ``hetdps``)."""

    config_class = HetDPSConfig

    def __init__(self, config: HetDPSConfig | None = None) -> None:
        self.config = config or HetDPSConfig()
        self.spec: HostSpec | None = None
        self.manager: DynamicSharingManager | None = None
        self.estimator: DistanceEstimator | None = None
        self.slots: ParameterSlots | None = None
        self.last_distance: torch.Tensor | None = None

    @hookimpl
    def hetplug_configure(self, spec: HostSpec) -> None:
        self.spec = spec
        self.manager = DynamicSharingManager(spec.n_agents, self.config.sharing_config())

    @hookimpl
    def hetplug_bind(self, host: HostObjects) -> None:
        if host.parameter_slots is None:
            raise ValueError(
                "the hetdps plugin needs the host's parameter slots (HostObjects.parameter_slots): "
                "build the policy from hetplug's slot model, whose agents can be regrouped in place"
            )
        self.bind(host.parameter_slots)

    def bind(self, slots: ParameterSlots) -> None:
        """Give the plugin the host's slot parameters; plans are then applied in place."""
        if not isinstance(slots, ParameterSlots):
            raise ValueError(f"slots must be a hetplug.sharing.ParameterSlots, got {type(slots).__name__}")
        if self.manager is not None and slots.n_slots != self.manager.n_slots:
            raise ValueError(
                f"slots has {slots.n_slots} slots but the manager uses n_slots={self.manager.n_slots}"
            )
        self.slots = slots

    def routing(self, device: torch.device | str | None = None) -> torch.Tensor:
        """``[N]`` int64 agent -> slot, as of the latest regrouping."""
        self._require_configured()
        return self.manager.routing(device if device is not None else self.spec.device)

    def _require_configured(self) -> None:
        if self.manager is None:
            raise RuntimeError("call hetplug_configure before using the hetdps plugin")

    def _build_estimator(self, x_dim: int, y_dim: int) -> DistanceEstimator:
        c = self.config
        return DistanceEstimator(
            self.spec.n_agents, x_dim, y_dim, "model_free", c.cvae,
            c.pool_capacity, c.fit_samples, self.spec.device, c.seed,
        )  # fmt: skip

    @hookimpl
    def hetplug_trajectories_collected(self, batch: TrajectoryBatch) -> None:
        self._require_configured()
        if batch.max_steps < 2:
            return None
        x, y = meta_transitions(batch, self.spec.n_actions, self.config.reward_repeat)
        if x.shape[1] != self.spec.n_agents:
            raise ValueError(f"batch has {x.shape[1]} agents but HostSpec.n_agents={self.spec.n_agents}")
        if self.estimator is None:
            self.estimator = self._build_estimator(x.shape[-1], y.shape[-1])
        self.estimator.add(x, y)
        return None

    @hookimpl
    def hetplug_after_update(self, update: int) -> dict[str, Any] | None:
        self._require_configured()
        if not self.manager.due(update):
            return None
        if self.estimator is None or len(self.estimator.pool) == 0:
            return {"hetdps/skipped": 1.0}
        fit = self.estimator.fit()
        distance = self.estimator.distance_matrix(n_samples=self.config.distance_samples)
        plan = self.manager.update(distance)
        if self.slots is not None:
            self.slots.apply(plan)
        self.last_distance = distance
        return {
            "hetdps/plan": plan,
            "hetdps/distance": distance,
            "hetdps/n_groups": float(plan.n_groups),
            "hetdps/cvae_loss": fit["loss"],
            "hetdps/mean_distance": float(distance.sum()) / max(1, distance.numel() - distance.shape[0]),
        }

    def state_dict(self) -> dict[str, Any]:
        self._require_configured()
        state: dict[str, Any] = versioned({"manager": self.manager.state_dict()})
        if self.estimator is not None:
            state["estimator"] = self.estimator.state_dict()
            state["dims"] = (self.estimator.pool.x_dim, self.estimator.pool.y_dim)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the grouping and the estimator; the slot parameters are the host's (saved
        with its model)."""
        state = read_versioned(state, "hetdps")
        self._require_configured()
        self.manager.load_state_dict(state["manager"])
        if "estimator" in state:
            self.estimator = self._build_estimator(*state["dims"])
            self.estimator.load_state_dict(state["estimator"])
        if self.slots is not None:
            for r in self.slots.routing:
                r.copy_(self.manager.routing(r.device))
