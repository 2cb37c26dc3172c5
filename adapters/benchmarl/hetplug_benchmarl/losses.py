"""Importance-weighted losses for prioritised replay, and the registry that picks them.

A prioritised draw must be corrected by its IS weights (PER; SHEP eq. 7-8). TorchRL's
DQN, SAC and DDPG losses already read them (``priority_weight``); its QMIX/VDN mixer loss
and its clipped PPO loss ignore them. :data:`WEIGHTED_LOSSES` says, for every BenchMARL
algorithm hetplug's replay serves, how its loss takes the weights and where it writes
its TD error. For the two losses that ignore them the adapter builds a real subclass
(:class:`WeightedQMixerLoss`, :class:`WeightedClipPPOLoss`) from the algorithm's own loss:
the same networks (so the same parameters, which the optimisers already hold), keys and
value estimator. An algorithm that is not registered is refused, never patched; register
yours with :func:`register_weighted_loss`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from benchmarl.algorithms import Iddpg, Ippo, Iql, Isac, Maddpg, Mappo, Masac, Qmix, Vdn
from tensordict import TensorDict, TensorDictBase
from torchrl.objectives import ClipPPOLoss, LossModule
from torchrl.objectives.multiagent.qmixer import QMixerLoss
from torchrl.objectives.utils import distance_loss

WEIGHT_KEY = "priority_weight"  # what TorchRL 0.11 losses read as IS weights


def _copy_keys_and_estimator(source: LossModule, target: LossModule, **hyperparams) -> LossModule:
    target.set_keys(**dataclasses.asdict(source.tensor_keys))
    target.make_value_estimator(source.value_type, **hyperparams)
    return target


class WeightedQMixerLoss(QMixerLoss):
    """QMIX/VDN's mixer loss with importance weights (TorchRL's ignores them).

    Same TD target as :class:`~torchrl.objectives.multiagent.QMixerLoss`; the per-sample
    loss is averaged with the IS weights (self-normalised, as TorchRL's ``_reduce`` does
    for its other losses), and ``|Q_tot - y|`` is written as the TD error.
    """

    # TorchRL checks that a loss class declares the networks it converts
    __annotations__ = dict(QMixerLoss.__annotations__)

    @classmethod
    def build_from(cls, loss: QMixerLoss) -> WeightedQMixerLoss:
        """The same networks, loss function, keys and TD(0) estimator as ``loss``."""
        new = cls(
            loss.local_value_network,
            loss.mixer_network,
            loss_function=loss.loss_function,
            delay_value=loss.delay_value,
            action_space=loss.action_space,
        )
        return _copy_keys_and_estimator(loss, new, gamma=float(loss._value_estimator.gamma))

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        work = tensordict.clone(False)
        with self.local_value_network_params.to_module(self.local_value_network):
            self.local_value_network(work)
        q = work.get(self.tensor_keys.action_value)  # [B, N, A]
        action = tensordict.get(self.tensor_keys.action)
        if self.action_space == "categorical":
            chosen = q.gather(-1, action if action.shape == q.shape else action.unsqueeze(-1))
        else:
            chosen = (q * action.float()).sum(-1, keepdim=True)
        work.set(self.tensor_keys.local_value, chosen)  # [B, N, 1]
        with self.mixer_network_params.to_module(self.mixer_network):
            self.mixer_network(work)
        q_tot = work.get(self.tensor_keys.global_value).squeeze(-1)
        target = self.value_estimator.value_estimate(work, target_params=self._cached_target_params).squeeze(
            -1
        )
        tensordict.set(self.tensor_keys.priority, (q_tot - target).detach().abs().unsqueeze(-1), inplace=True)
        per_sample = distance_loss(q_tot, target, self.loss_function).reshape(q_tot.shape[0], -1).mean(-1)
        weights = tensordict.get(WEIGHT_KEY, None)
        if weights is None:
            loss = per_sample.mean()
        else:
            w = weights.reshape(weights.shape[0], -1)[:, 0].to(per_sample.dtype)
            loss = (per_sample * w).sum() / w.sum()
        return TensorDict({"loss": loss}, [])


class WeightedClipPPOLoss(ClipPPOLoss):
    """TorchRL's clipped PPO loss with importance weights (TorchRL's ignores them).

    The loss terms are computed per sample and agent (``reduction="none"``) and averaged
    with the ``[B, N]`` IS weights, ``mean(w * l)``; with all weights 1 it is the mean
    TorchRL takes.
    """

    # TorchRL checks that a loss class declares the networks it converts
    __annotations__ = dict(ClipPPOLoss.__annotations__)

    @classmethod
    def build_from(cls, loss: ClipPPOLoss) -> WeightedClipPPOLoss:
        """The same actor and critic, coefficients, keys and advantage estimator as ``loss``."""
        new = cls(
            actor_network=loss.actor_network,
            critic_network=loss.critic_network,
            clip_epsilon=float(loss.clip_epsilon),
            entropy_bonus=loss.entropy_bonus,
            samples_mc_entropy=loss.samples_mc_entropy,
            entropy_coeff=float(loss.entropy_coeff),
            critic_coeff=None if loss.critic_coeff is None else float(loss.critic_coeff),
            loss_critic_type=loss.loss_critic_type,
            normalize_advantage=loss.normalize_advantage,
            normalize_advantage_exclude_dims=loss.normalize_advantage_exclude_dims,
            separate_losses=loss.separate_losses,
            reduction=loss.reduction,
            clip_value=loss.clip_value,
        )
        estimator = loss._value_estimator
        return _copy_keys_and_estimator(
            loss,
            new,
            gamma=float(estimator.gamma),
            lmbda=float(estimator.lmbda),
            average_gae=estimator.average_gae,
        )

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        weights = tensordict.get(WEIGHT_KEY, None)
        if weights is None:
            return super().forward(tensordict)
        reduction, self.reduction = self.reduction, "none"
        try:
            out = super().forward(tensordict)
        finally:
            self.reduction = reduction
        for name in [k for k in out.keys() if k.startswith("loss_")]:
            value = out.get(name)
            w = weights.to(value.dtype)
            if value.dim() < w.dim() or tuple(value.shape[: w.dim()]) != tuple(w.shape):
                raise ValueError(
                    f"hetplug: PPO loss term {name} has shape {tuple(value.shape)}, cannot apply "
                    f"IS weights of shape {tuple(w.shape)}"
                )
            w = w.reshape(*w.shape, *([1] * (value.dim() - w.dim())))
            out.set(name, (value * w).mean())
        return out


@dataclass(frozen=True)
class Weighting:
    """How one algorithm's loss takes IS weights.

    Attributes:
        loss: the weighted subclass to build from the algorithm's loss (``build_from``), or
            None when the algorithm's TorchRL loss reads ``priority_weight`` itself.
        td_squared: the loss writes ``(Q - y)^2`` as its TD error (DQN, DDPG) rather than
            ``|Q - y|``; the replay takes the square root.
        on_policy: priorities come from the rollout's ``|advantage|`` (PPO), not TD errors.
    """

    loss: type[LossModule] | None
    td_squared: bool = False
    on_policy: bool = False


#: BenchMARL algorithm class -> how its loss is weighted (exact classes: a subclass of one
#: of these may build another loss, so it must be registered on its own)
WEIGHTED_LOSSES: dict[type, Weighting] = {
    Iql: Weighting(None, td_squared=True),  # DQNLoss
    Iddpg: Weighting(None, td_squared=True),  # DDPGLoss
    Maddpg: Weighting(None, td_squared=True),
    Isac: Weighting(None),  # SACLoss / DiscreteSACLoss: |Q - y|
    Masac: Weighting(None),
    Qmix: Weighting(WeightedQMixerLoss),
    Vdn: Weighting(WeightedQMixerLoss),
    Mappo: Weighting(WeightedClipPPOLoss, on_policy=True),
    Ippo: Weighting(WeightedClipPPOLoss, on_policy=True),
}


def register_weighted_loss(algorithm: type, weighting: Weighting) -> None:
    """Tell hetplug how ``algorithm``'s (a BenchMARL ``Algorithm`` class) loss takes IS weights."""
    if not isinstance(weighting, Weighting):
        raise TypeError(f"weighting must be a hetplug_benchmarl.losses.Weighting, got {weighting!r}")
    WEIGHTED_LOSSES[algorithm] = weighting


def weighting_for(algorithm: type) -> Weighting:
    """The registered :class:`Weighting` of a BenchMARL algorithm class; raises naming the
    fix when there is none."""
    found = WEIGHTED_LOSSES.get(algorithm)
    if found is None:
        known = ", ".join(sorted(cls.__name__ for cls in WEIGHTED_LOSSES))
        raise ValueError(
            f"prioritised replay: hetplug has no weighted loss for algorithm {algorithm.__name__} "
            f"(registered: {known}); its IS weights would be ignored. Register one with "
            "hetplug_benchmarl.losses.register_weighted_loss"
        )
    return found


def install_weighted_loss(experiment, group: str, weighting: Weighting) -> None:
    """Replace ``group``'s loss by ``weighting.loss.from_loss(loss)`` where the experiment and
    its algorithm keep it, with a target updater for the new loss built as BenchMARL builds
    one. Parameters are shared, so the optimisers and the collector's policy are untouched."""
    if weighting.loss is None:
        return
    from torchrl.objectives import HardUpdate, SoftUpdate

    old = experiment.losses[group]
    if type(old) is weighting.loss:
        return  # already weighted (a restored experiment wrapped again)
    new = weighting.loss.build_from(old)
    updater = None
    if experiment.target_updaters[group] is not None:
        cfg = experiment.config
        updater = (
            SoftUpdate(new, tau=cfg.polyak_tau)
            if cfg.soft_target_update
            else HardUpdate(new, value_network_update_interval=cfg.hard_target_update_frequency)
        )
    experiment.losses[group] = new
    experiment.target_updaters[group] = updater
    experiment.algorithm._losses_and_updaters[group] = (new, updater)
