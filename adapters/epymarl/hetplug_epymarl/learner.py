"""A learner that wraps EPyMARL's Q-learner (IQL, VDN, QMIX) to apply IS weights and
feed TD errors back to the prioritiser.

EPyMARL's ``QLearner.train`` keeps its TD errors local and averages the loss itself, so
the weighted update is computed here, on the host learner's own objects (mac, target
mac, mixers, optimiser, running statistics), from the pymarl Q-learning formulas:

    y_t   = r_t + gamma (1 - d_t) Qbar_tot(s_{t+1}, argmax_a Q(s_{t+1}, a))   (double Q)
    delta = Q_tot(s_t, u_t) - y_t                                             (per episode b)
    L     = sum_{b,t} w_b m_{b,t} delta_{b,t}^2 / sum_{b,t} m_{b,t}           (PER: w_b IS weight)

With every ``w_b = 1`` it is the host's update; ``tests/test_epymarl.py`` checks that
parameter for parameter against the host's own ``train``.
"""

from __future__ import annotations

from typing import Any

import torch

from hetplug_epymarl.session import Session

_NEG = -9999999.0  # the host's value for unavailable actions


def _unroll(mac, batch) -> torch.Tensor:
    """``[B, T, N, A]`` Q-values of ``mac`` over the whole batch (recurrent agents)."""
    mac.init_hidden(batch.batch_size)
    return torch.stack([mac.forward(batch, t=t) for t in range(batch.max_seq_length)], dim=1)


def weighted_q_update(learner, batch, weights: torch.Tensor, t_env: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step of ``learner`` (the host's QLearner) with per-episode weights.

    Returns ``(|delta| masked, mask)``: ``[B, T-1]`` (mixer) or ``[B, T-1, N]`` (IQL) TD
    errors and the ``[B, T-1]`` valid-step mask, for the priority update.
    """
    args = learner.args
    rewards = batch["reward"][:, :-1]
    actions = batch["actions"][:, :-1]
    terminated = batch["terminated"][:, :-1].float()
    mask = batch["filled"][:, :-1].float()
    mask[:, 1:] = mask[:, 1:] * (1 - terminated[:, :-1])  # no step after termination
    avail = batch["avail_actions"]
    if getattr(args, "standardise_rewards", False):
        learner.rew_ms.update(rewards)
        rewards = (rewards - learner.rew_ms.mean) / torch.sqrt(learner.rew_ms.var)

    q = _unroll(learner.mac, batch)
    chosen = torch.gather(q[:, :-1], dim=3, index=actions).squeeze(3)
    with torch.no_grad():
        target_q = _unroll(learner.target_mac, batch)[:, 1:]
        target_q[avail[:, 1:] == 0] = _NEG
        if args.double_q:
            live = q.detach().clone()
            live[avail == 0] = _NEG
            greedy = live[:, 1:].max(dim=3, keepdim=True)[1]
            target_max = torch.gather(target_q, 3, greedy).squeeze(3)
        else:
            target_max = target_q.max(dim=3)[0]
    if learner.mixer is not None:
        chosen = learner.mixer(chosen, batch["state"][:, :-1])
        with torch.no_grad():
            target_max = learner.target_mixer(target_max, batch["state"][:, 1:])
    standardise_returns = getattr(args, "standardise_returns", False)
    if standardise_returns:
        target_max = target_max * torch.sqrt(learner.ret_ms.var) + learner.ret_ms.mean
    targets = rewards + args.gamma * (1 - terminated) * target_max
    if standardise_returns:
        learner.ret_ms.update(targets)
        targets = (targets - learner.ret_ms.mean) / torch.sqrt(learner.ret_ms.var)

    td = chosen - targets.detach()
    mask_full = mask.expand_as(td)
    masked = td * mask_full
    w = weights.to(td.device, td.dtype).reshape(-1, *([1] * (td.dim() - 1)))
    loss = (w * masked**2).sum() / mask_full.sum()

    learner.optimiser.zero_grad()
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(learner.params, args.grad_norm_clip)
    learner.optimiser.step()

    learner.training_steps += 1
    tau = args.target_update_interval_or_tau
    if tau > 1 and (learner.training_steps - learner.last_target_update_step) / tau >= 1.0:
        learner._update_targets_hard()
        learner.last_target_update_step = learner.training_steps
    elif tau <= 1.0:
        learner._update_targets_soft(tau)

    if t_env - learner.log_stats_t >= args.learner_log_interval:
        n = mask_full.sum().item()
        log = learner.logger.log_stat
        log("loss", loss.item(), t_env)
        log("grad_norm", grad_norm.item(), t_env)
        log("td_error_abs", masked.abs().sum().item() / n, t_env)
        log("q_taken_mean", (chosen * mask_full).sum().item() / (n * args.n_agents), t_env)
        log("target_mean", (targets * mask_full).sum().item() / (n * args.n_agents), t_env)
        learner.log_stats_t = t_env
    return masked.detach(), mask.squeeze(-1).bool()


class HetplugLearner:
    """Any host learner with hetplug around it: a prioritised sample gets the weighted
    Q-learning update below; every other attribute
    (mac, mixer, cuda, ...) is the host learner's."""

    def __init__(self, inner, session: Session) -> None:
        self.inner = inner
        self.session = session
        self._log_t = -int(getattr(inner.args, "learner_log_interval", 0)) - 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["inner"], name)

    def train(self, batch, t_env: int, episode_num: int, *args: Any, **kwargs: Any):
        session = self.session
        sample = session.take_sample(batch.batch_size)
        if sample is None:
            out = self.inner.train(batch, t_env, episode_num, *args, **kwargs)
        else:
            out = None
            td, mask = weighted_q_update(self.inner, batch, sample.weights, t_env)
            session.pm.hook.hetplug_update_priorities(indices=sample.indices, td_error=td, mask=mask)
        session.after_update()
        if t_env - self._log_t >= self.inner.args.learner_log_interval:
            for name, value in session.scalar_metrics().items():
                # "_" not "/": hosts write one file per stat name (PyMARLzoo+'s plots)
                self.inner.logger.log_stat("hetplug_" + name.replace("/", "_"), value, t_env)
            self._log_t = t_env
        return out

    def save_models(self, path: str) -> None:
        self.inner.save_models(path)
        torch.save(self.session.state_dict(), f"{path}/hetplug.th")

    def load_models(self, path: str) -> None:
        try:
            state = torch.load(f"{path}/hetplug.th", weights_only=False)
        except FileNotFoundError:
            raise ValueError(
                f"{path}/hetplug.th not found: the checkpoint was saved without hetplug"
            ) from None
        self.session.load_state_dict(state)
        self.inner.load_models(path)
