"""HAPPO for BenchMARL: sequential per-agent PPO updates weighted by the M factor.

Heterogeneous-Agent PPO (Kuba et al., ICLR 2022), the backbone of SHPPO (the SHPPO paper's
Section III, eq. (2)); the reference implementation is PKU-MARL/HARL
(``harl/algorithms/actors/happo.py``, ``harl/runners/on_policy_ha_runner.py``). Registered
as ``happo`` in BenchMARL's ``algorithm_config_registry`` (yaml
``hetplug_benchmarl/conf/algorithm/happo.yaml``).

Every iteration, per agent group, after MAPPO's GAE (``process_batch``):

1. the order i_1..i_N is a random permutation of the group's agents, a pure function of
   (experiment seed, group, iteration), so it changes between iterations and a restored
   run draws the same ones;
2. agent i_1 trains during BenchMARL's own optimiser loop, on its minibatches, beside the
   centralised critic (MAPPO's V(s) critic, trained exactly as MAPPO trains it): with one
   agent HAPPO *is* MAPPO;
3. after i_1's last step, ``M <- M * pi_new / pi_old`` on every stored sample, both
   log-probabilities evaluated afresh with i_1's parameters after and before its update;
   then i_2, ..., i_N each take as many minibatches from the group's buffer (hetplug's
   prioritised buffer included: ``priority_weight`` reaches the loss), with M multiplying
   their advantage (eq. 2), M updated after each in the same way.

Agent i's update is a loss on column i of the group's ``[B, N, ...]`` TensorDict stepped by
BenchMARL's actor optimiser. With ``share_policy_params=True`` ("HAPPO (share)", what SHPPO
uses) the one shared network is stepped by each agent in turn, as HARL's ``share_param``
runner does (one actor object in every agent's slot). Otherwise each agent moves only its
own rows of BenchMARL's per-agent stacked parameters: the other rows, and their Adam
moments, are restored after each step (Adam would otherwise move them by momentum).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from benchmarl.algorithms import Mappo, algorithm_config_registry
from benchmarl.algorithms.common import Algorithm, AlgorithmConfig
from benchmarl.utils import _read_yaml_config
from tensordict import TensorDict, TensorDictBase
from torchrl.envs.utils import set_exploration_type
from torchrl.modules import set_recurrent_mode
from torchrl.objectives import ClipPPOLoss

from hetplug_benchmarl.losses import WEIGHT_KEY, WeightedClipPPOLoss, Weighting, register_weighted_loss
from hetplug_benchmarl.models import CONF


def _mean(loss: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """``mean(w * l)`` with IS weights, the plain mean without (equal when every w is 1)."""
    return loss.mean() if weights is None else (weights.to(loss.dtype) * loss).mean()


class HappoLoss(WeightedClipPPOLoss):
    """HAPPO's loss for one agent: its clipped surrogate with the advantage times M (eq. 2),
    its entropy bonus, and the centralised critic's loss (eq. 3) over every agent.

    Attributes:
        agent: the column of ``[B, N]`` whose policy this loss trains.
        factor: M by storage index (``[rows]``, ``[rows, T]`` for sequences), looked up
            with the sample's ``"index"``; None means M = 1 (the first agent of a round).

    ``priority_weight`` ``[B, N]`` (hetplug's prioritised replay) weights every term,
    ``mean(w * l)``; without it the terms are plain means.
    """

    # TorchRL checks that a loss class declares the networks it converts
    __annotations__ = dict(ClipPPOLoss.__annotations__)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.agent = 0
        self.factor: torch.Tensor | None = None

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        return self._terms(tensordict, critic=True)

    def actor_loss(self, tensordict: TensorDictBase) -> TensorDictBase:
        """The actor's terms only (agents after the first: the critic trains with i_1)."""
        return self._terms(tensordict, critic=False)

    def _terms(self, tensordict: TensorDictBase, critic: bool) -> TensorDictBase:
        td = tensordict.clone(False)
        advantage = td.get(self.tensor_keys.advantage, None)  # [*B, N, 1]
        if advantage is None:
            raise KeyError(
                f"HAPPO reads the advantage {self.tensor_keys.advantage} that process_batch computes"
            )
        agents_shape = advantage.shape[:-1]
        log_weight, dist, kl_approx = self._log_weight(td, adv_shape=agents_shape)
        # min(r A, clip(r) A), as TorchRL's ClipPPOLoss computes it
        clipped = log_weight.clamp(*self._clip_bounds).exp()
        gain = torch.stack([log_weight.exp() * advantage, clipped * advantage], -1).min(dim=-1).values
        weights = td.get(WEIGHT_KEY, None)
        if weights is not None and weights.shape != agents_shape:
            raise ValueError(f"HAPPO: {WEIGHT_KEY} must be {tuple(agents_shape)}, got {tuple(weights.shape)}")
        a = self.agent
        mine = None if weights is None else weights[..., a]
        objective = -gain[..., a, 0]
        factor = self._factor_of(td)
        if factor is not None:  # eq. (2): min(r M A, clip(r) M A) = M min(r A, clip(r) A), as M > 0
            objective = objective * factor
        out = TensorDict({"loss_objective": _mean(objective, mine)})
        own = log_weight[..., a, :]
        out.set("clip_fraction", (own.clamp(*self._clip_bounds) != own).to(own.dtype).mean().detach())
        out.set("kl_approx", kl_approx[..., a, :].detach().mean())
        if self.entropy_bonus:
            entropy = self._get_entropy(dist, adv_shape=agents_shape)  # [*B, N, 1]
            out.set("entropy", entropy[..., a, 0].detach().mean())
            out.set("loss_entropy", _mean(self._weighted_loss_entropy(entropy)[..., a, 0], mine))
        if critic:
            value_loss, _, _ = self.loss_critic(td)  # critic_coeff * (V(s) - R)^2, [*B, N, 1]
            out.set("loss_critic", _mean(value_loss[..., 0], weights))
        return out

    def _factor_of(self, td: TensorDictBase) -> torch.Tensor | None:
        if self.factor is None:
            return None
        index = td.get("index", None)
        if index is None:
            raise KeyError(
                "HAPPO's M factor is looked up by the replay buffer's 'index': sample from the group's buffer"
            )
        rows = index.reshape(index.shape[0], -1)[:, 0]  # one storage row per sample (or sequence)
        return self.factor[rows.to(self.factor.device)].to(td.device)


@dataclass
class HappoRound:
    """One iteration's sequential update of one group (kept for inspection as
    ``Happo.last_round[group]``)."""

    iteration: int
    order: list[int]
    #: BenchMARL optimiser-loop calls seen (agent i_1's steps)
    calls: int = 0
    #: i_1's log pi - log pi_behaviour on every stored sample before its first step
    before: torch.Tensor | None = None
    #: agent -> the M it trained with (by storage index); i_1 trains with M = 1
    factors: dict[int, torch.Tensor] = field(default_factory=dict)


class Happo(Mappo):
    """Heterogeneous-Agent PPO (HAPPO): MAPPO's actor, critic and GAE with HARL's sequential,
    M-weighted actor update (module docstring).

    Args (besides :class:`~benchmarl.algorithms.Mappo`'s):
        fixed_order (bool): update the agents in index order every iteration instead of a
            random permutation (HARL's ``fixed_order``).
    """

    def __init__(self, fixed_order: bool, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fixed_order = fixed_order
        #: group -> the current (or last finished) round
        self.last_round: dict[str, HappoRound] = {}
        #: group -> the order of every round so far
        self.orders: dict[str, list[list[int]]] = {}
        self._per_agent: dict[str, bool] = {}

    def _get_loss(self, group: str, policy_for_loss, continuous: bool):
        stock, use_target = super()._get_loss(group, policy_for_loss, continuous)
        loss = HappoLoss.build_from(stock)
        n_agents = len(self.group_map[group])
        self._per_agent[group] = not self.experiment_config.share_policy_params and n_agents > 1
        if self._per_agent[group]:
            for name, p in loss.actor_network_params.flatten_keys().items():
                if p.requires_grad and (p.dim() == 0 or p.shape[0] != n_agents):
                    raise ValueError(
                        f"HAPPO with share_policy_params=False steps each agent's own parameters: the "
                        f"policy model must stack them per agent (BenchMARL's Mlp, Cnn), but {name!r} of "
                        f"group {group!r} has shape {tuple(p.shape)} for {n_agents} agents; use "
                        "share_policy_params=True for a shared model (e.g. hetplug's SHPPO model)"
                    )
        return loss, use_target

    def agent_order(self, group: str, iteration: int) -> list[int]:
        """The order i_1..i_N of ``group``'s agents at ``iteration``: a permutation drawn
        from (experiment seed, group, iteration), or index order with ``fixed_order``."""
        n_agents = len(self.group_map[group])
        if self.fixed_order:
            return list(range(n_agents))
        entropy = [int(self.experiment.seed) % 2**32, list(self.group_map).index(group), iteration]
        seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
        return torch.randperm(n_agents, generator=torch.Generator().manual_seed(seed)).tolist()

    def process_batch(self, group: str, batch: TensorDictBase) -> TensorDictBase:
        batch = super().process_batch(group, batch)  # GAE with the critic, as MAPPO
        iteration = self.experiment.n_iters_performed
        current = self.last_round.get(group)
        if current is None or current.iteration != iteration:  # (Group-HER copies come here too)
            if current is not None and 0 < current.calls < self._steps_per_agent():
                raise RuntimeError(
                    f"HAPPO expected {self._steps_per_agent()} optimiser steps per iteration for group "
                    f"{group!r} and saw {current.calls}: agents after the first were never updated"
                )
            current = HappoRound(iteration, self.agent_order(group, iteration))
            self.last_round[group] = current
            self.orders.setdefault(group, []).append(current.order)
        loss = self._loss(group)
        loss.agent, loss.factor = current.order[0], None
        return batch

    def process_loss_vals(self, group: str, loss_vals: TensorDictBase) -> TensorDictBase:
        """One step of BenchMARL's optimiser loop: agent i_1's actor step (here), the critic's
        (BenchMARL's, on the returned ``loss_critic``); after the last, agents i_2..i_N."""
        current = self.last_round[group]
        if current.calls == 0 and len(current.order) > 1:
            current.before = self._log_ratio(group, current.order[0])
        self._step_actor(group, _actor_objective(loss_vals), current.order[0])
        current.calls += 1
        if current.calls == self._steps_per_agent():
            self._finish_round(group, current)
        return loss_vals.exclude("loss_objective", "loss_entropy")

    #####################
    # The sequential update
    #####################

    def _finish_round(self, group: str, current: HappoRound) -> None:
        """After i_1's last step: i_2..i_N in turn, each with the M of those before it."""
        order, factor, before = current.order, None, current.before
        for m, agent in enumerate(order):
            last = m + 1 == len(order)
            if m:
                before = None if last else self._log_ratio(group, agent)
                current.factors[agent] = factor
                self._train_agent(group, agent, factor)
            if not last:  # M^{i_1:m+1} = M^{i_1:m} * pi_new / pi_old of agent i_m+1, both fresh
                ratio = (self._log_ratio(group, agent) - before).exp()
                factor = ratio if factor is None else factor * ratio
        loss = self._loss(group)
        loss.agent, loss.factor = order[0], None
        if len(order) > 1:
            seen = current.factors[order[-1]]
            self.experiment.logger.log(
                {
                    f"train/{group}/happo_factor_mean": seen.mean().item(),
                    f"train/{group}/happo_factor_max": seen.max().item(),
                },
                step=self.experiment.n_iters_performed,
            )

    def _train_agent(self, group: str, agent: int, factor: torch.Tensor | None) -> None:
        """Agent ``agent``'s minibatch steps (as many as i_1 took), drawn from the group's buffer."""
        loss, buffer = self._loss(group), self.experiment.replay_buffers[group]
        loss.agent, loss.factor = agent, factor
        for _ in range(self._steps_per_agent()):
            subdata = buffer.sample().to(self.device)
            self._step_actor(group, _actor_objective(loss.actor_loss(subdata)), agent)

    @torch.no_grad()
    def _log_ratio(self, group: str, agent: int) -> torch.Tensor:
        """``log pi(a|o) - log pi_behaviour(a|o)`` of ``agent`` with the current parameters on
        every stored sample, by storage index (the behaviour term cancels in M's ratios)."""
        loss = self._loss(group)
        data = self.experiment.replay_buffers[group][:]
        rows = max(1, self.experiment_config.train_minibatch_size(True) // max(1, data[0].numel()))
        parts = []
        # as inside the loss's forward: models that re-evaluate stored steps (SHPPO's stored
        # latents, recurrent unrolls) see the same modes here
        with set_exploration_type(loss.deterministic_sampling_mode), set_recurrent_mode(True):
            for chunk in data.split(rows):
                chunk = chunk.to(self.device)
                advantage = chunk.get(loss.tensor_keys.advantage)
                log_weight, _, _ = loss._log_weight(chunk, adv_shape=advantage.shape[:-1])
                parts.append(log_weight[..., agent, 0])
        return torch.cat(parts)

    def _step_actor(self, group: str, objective: torch.Tensor, agent: int) -> None:
        """Backward, BenchMARL's gradient clipping and its actor optimiser's step; with
        per-agent parameters only ``agent``'s rows (and their Adam moments) move."""
        optimizer = self.experiment.optimizers[group]["loss_objective"]
        objective.backward()
        self.experiment._grad_clip(optimizer)
        kept = _other_rows(optimizer, agent) if self._per_agent[group] else []
        optimizer.step()
        for tensor, saved, others in kept:
            tensor.data[others] = saved[others]
        optimizer.zero_grad()

    def _steps_per_agent(self) -> int:
        """Minibatch steps per agent and iteration: BenchMARL's optimiser-loop count."""
        cfg = self.experiment_config
        return cfg.n_optimizer_steps(True) * -(-cfg.train_batch_size(True) // cfg.train_minibatch_size(True))

    def _loss(self, group: str) -> HappoLoss:
        return self.get_loss_and_updater(group)[0]


def _actor_objective(loss_vals: TensorDictBase) -> torch.Tensor:
    """The actor's loss: clipped surrogate plus entropy term (MAPPO's ``process_loss_vals``)."""
    objective = loss_vals.get("loss_objective")
    entropy = loss_vals.get("loss_entropy", None)
    return objective if entropy is None else objective + entropy


def _other_rows(optimizer: torch.optim.Optimizer, agent: int) -> list:
    """Copies of every stepped parameter (and its same-shaped optimiser state) with the rows
    of the agents other than ``agent``, to restore after the step."""
    kept = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is None:
                continue
            others = torch.ones(p.shape[0], dtype=torch.bool, device=p.device)
            others[agent] = False
            state = optimizer.state.get(p, {})
            for tensor in (p, *(v for v in state.values() if torch.is_tensor(v) and v.shape == p.shape)):
                kept.append((tensor, tensor.detach().clone(), others))
    return kept


@dataclass
class HappoConfig(AlgorithmConfig):
    """Configuration of :class:`Happo` (yaml ``hetplug_benchmarl/conf/algorithm/happo.yaml``,
    Hydra ``algorithm=happo``). Defaults: HARL's ``happo.yaml`` and the SHPPO paper's
    Table V where they set a value; MAPPO's (BenchMARL) otherwise."""

    share_param_critic: bool = True
    """One critic V(s) for the group (HARL's); False: one per agent."""
    clip_epsilon: float = 0.2
    """PPO clip (Table V, HARL)."""
    entropy_coef: float = 0.01
    """Entropy bonus weight (HARL's ``entropy_coef``)."""
    critic_coef: float = 1.0
    """Critic loss weight (HARL's ``value_loss_coef``)."""
    loss_critic_type: str = "l2"
    """``l2`` is eq. (3)'s squared error; ``l1``, ``smooth_l1``."""
    lmbda: float = 0.95
    """GAE lambda (Table V, HARL)."""
    scale_mapping: str = "biased_softplus_1.0"
    """Positive map of the Gaussian scale (continuous actions), as MAPPO."""
    use_tanh_normal: bool = True
    """Continuous actions: TanhNormal (True) or IndependentNormal, as MAPPO."""
    minibatch_advantage: bool = False
    """Compute GAE on minibatches (memory), as MAPPO."""
    fixed_order: bool = False
    """Update agents in index order instead of a random permutation each iteration."""

    def __post_init__(self) -> None:
        if not 0 < self.clip_epsilon:
            raise ValueError(f"clip_epsilon must be > 0, got clip_epsilon={self.clip_epsilon}")
        if not 0 <= self.lmbda <= 1:
            raise ValueError(f"lmbda must be in [0, 1], got lmbda={self.lmbda}")

    @classmethod
    def get_from_yaml(cls, path: str | None = None) -> HappoConfig:
        return cls(**_read_yaml_config(path or str(CONF / "algorithm" / "happo.yaml")))

    @staticmethod
    def associated_class() -> type[Algorithm]:
        return Happo

    @staticmethod
    def supports_continuous_actions() -> bool:
        return True

    @staticmethod
    def supports_discrete_actions() -> bool:
        return True

    @staticmethod
    def on_policy() -> bool:
        return True

    @staticmethod
    def has_centralized_critic() -> bool:
        return True


def register() -> None:
    """``happo`` in BenchMARL's registry and Hydra's config store; its weighted loss for
    hetplug's prioritised replay (HappoLoss reads ``priority_weight`` itself)."""
    algorithm_config_registry["happo"] = HappoConfig
    register_weighted_loss(Happo, Weighting(None, on_policy=True))
    try:
        from hydra.core.config_store import ConfigStore
    except ImportError:  # Hydra is optional for BenchMARL
        return
    ConfigStore.instance().store(name="happo_config", group="algorithm", node=HappoConfig)
