"""The weighted updates: EPyMARL's Q-learner (IQL, VDN, QMIX) and PPO learner (IPPO, MAPPO)
with a weight per sampled episode (prioritised replay's IS weights, or LBS's per item).

EPyMARL's ``QLearner.train`` keeps its TD errors local and averages the loss itself, so
the weighted update is computed here, on the host learner's own objects (mac, target
mac, mixers, optimiser, running statistics), from the pymarl Q-learning formulas:

    y_t   = r_t + gamma (1 - d_t) Qbar_tot(s_{t+1}, argmax_a Q(s_{t+1}, a))   (double Q)
    delta = Q_tot(s_t, u_t) - y_t                                             (per episode b)
    L     = sum_{b,t} w_b m_{b,t} delta_{b,t}^2 / sum_{b,t} m_{b,t}           (PER: w_b IS weight)

and the PPO update likewise (:func:`weighted_ppo_update`). With every ``w_b = 1`` each is
the host's update; ``tests/epymarl/test_learner_oracles.py`` checks that parameter for
parameter against the host's own ``train``.
"""

from __future__ import annotations

import torch

_NEG = -9999999.0  # the host's value for unavailable actions


def _unroll(mac, batch) -> torch.Tensor:
    """``[B, T, N, A]`` Q-values of ``mac`` over the whole batch (recurrent agents)."""
    mac.init_hidden(batch.batch_size)
    return torch.stack([mac.forward(batch, t=t) for t in range(batch.max_seq_length)], dim=1)


def step_data(batch, steps=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(rewards, terminated, mask)`` for steps ``0..T-2``: from the batch (``[B, T-1, 1]``),
    or from per-agent ``steps = (reward, terminated, filled)`` ``[B, T, N]`` when every
    agent column holds another episode (LBS). The mask drops steps after termination."""
    if steps is None:
        reward, terminated, filled = batch["reward"], batch["terminated"], batch["filled"]
    else:
        reward, terminated, filled = steps
    rewards = reward[:, :-1]
    terminated = terminated[:, :-1].float()
    mask = filled[:, :-1].float()
    mask[:, 1:] = mask[:, 1:] * (1 - terminated[:, :-1])
    return rewards, terminated, mask


def _as_statistic(rewards: torch.Tensor, stat) -> torch.Tensor:
    """Rewards shaped for the host's running statistic ``stat``: with team rewards the host
    keeps one scalar statistic (shape (1,)), and LBS's per-column team rewards ``[R, T, N]``
    are samples of that one reward; per-agent rewards keep one statistic per agent."""
    if stat.mean.shape[-1] == 1 and rewards.shape[-1] != 1:
        return rewards.reshape(-1, 1)
    return rewards


def q_values_and_targets(learner, batch, rewards, terminated, update_stats: bool = True):
    """``(Q(s_t, u_t) [mixed], y_t)``, each ``[B, T-1, 1 or N]`` (see the module formulas)."""
    args = learner.args
    actions = batch["actions"][:, :-1]
    avail = batch["avail_actions"]
    if getattr(args, "standardise_rewards", False):
        if update_stats:
            learner.rew_ms.update(_as_statistic(rewards, learner.rew_ms))
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
        if update_stats:
            learner.ret_ms.update(targets)
        targets = (targets - learner.ret_ms.mean) / torch.sqrt(learner.ret_ms.var)
    return chosen, targets


@torch.no_grad()
def q_td_errors(learner, batch, steps=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked TD errors ``[B, T-1, 1 or N]`` and the mask, without any update (LBS's
    scoring of candidates). Running statistics are read, not updated."""
    rewards, terminated, mask = step_data(batch, steps)
    chosen, targets = q_values_and_targets(learner, batch, rewards, terminated, update_stats=False)
    mask = mask.expand_as(chosen)
    return (chosen - targets) * mask, mask


def weighted_q_update(
    learner, batch, weights: torch.Tensor, t_env: int, steps=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step of ``learner`` (the host's QLearner) with IS weights ``[B]`` per
    episode, or ``[B, N]`` per (row, agent column) for LBS (with per-column ``steps``).

    Returns ``(|delta| masked, mask)``: ``[B, T-1]`` (mixer) or ``[B, T-1, N]`` (IQL) TD
    errors and the ``[B, T-1]`` valid-step mask, for the priority update.
    """
    args = learner.args
    rewards, terminated, mask = step_data(batch, steps)
    chosen, targets = q_values_and_targets(learner, batch, rewards, terminated)
    td = chosen - targets.detach()
    mask_full = mask.expand_as(td)
    masked = td * mask_full
    w = weights.to(td.device, td.dtype)
    w = w.unsqueeze(1) if w.dim() == 2 else w.reshape(-1, *([1] * (td.dim() - 1)))  # [B,1,N] or [B,1,1]
    loss = (w * masked**2).sum() / mask_full.sum()

    learner.optimiser.zero_grad()
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(learner.params, args.grad_norm_clip)
    learner.optimiser.step()

    _step_targets(learner, "training_steps")

    if t_env - learner.log_stats_t >= args.learner_log_interval:
        n = mask_full.sum().item()
        log = learner.logger.log_stat
        log("loss", loss.item(), t_env)
        log("grad_norm", grad_norm.item(), t_env)
        log("td_error_abs", masked.abs().sum().item() / n, t_env)
        log("q_taken_mean", (chosen * mask_full).sum().item() / (n * args.n_agents), t_env)
        log("target_mean", (targets * mask_full).sum().item() / (n * args.n_agents), t_env)
        learner.log_stats_t = t_env
    return masked.detach(), (mask.squeeze(-1) if mask.shape[-1] == 1 else mask.amax(-1)).bool()


def _step_targets(learner, counter: str) -> None:
    """Count one update in ``learner.<counter>`` and update the targets as the host does:
    a hard copy every ``target_update_interval_or_tau`` (> 1) updates, else Polyak with tau."""
    steps = getattr(learner, counter) + 1
    setattr(learner, counter, steps)
    tau = learner.args.target_update_interval_or_tau
    if tau > 1 and (steps - learner.last_target_update_step) / tau >= 1.0:
        learner._update_targets_hard()
        learner.last_target_update_step = steps
    elif tau <= 1.0:
        learner._update_targets_soft(tau)


def _forward_steps(mac, batch) -> torch.Tensor:
    """``[B, T-1, N, A]`` policy outputs of ``mac`` for every step but the last."""
    mac.init_hidden(batch.batch_size)
    return torch.stack([mac.forward(batch, t=t) for t in range(batch.max_seq_length - 1)], dim=1)


def _critic_step(learner, batch, rewards, mask, w) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One critic update with the IS-weighted TD loss; returns the masked TD errors
    ``G^(n)_t - V(s_t)`` (the advantages) before the step, and what the host logs."""
    args = learner.args
    with torch.no_grad():
        target_vals = learner.target_critic(batch).squeeze(3)
    standardise_returns = getattr(args, "standardise_returns", False)
    if standardise_returns:
        target_vals = target_vals * torch.sqrt(learner.ret_ms.var) + learner.ret_ms.mean
    # n-step returns: the host's own method (its conventions for the last step)
    returns = learner.nstep_returns(rewards, mask, target_vals, args.q_nstep)
    if standardise_returns:
        learner.ret_ms.update(returns)
        returns = (returns - learner.ret_ms.mean) / torch.sqrt(learner.ret_ms.var)
    v = learner.critic(batch)[:, :-1].squeeze(3)
    masked = (returns.detach() - v) * mask
    loss = (w * masked**2).sum() / mask.sum()
    learner.critic_optimiser.zero_grad()
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(learner.critic_params, args.grad_norm_clip)
    learner.critic_optimiser.step()
    stats = {"critic_loss": loss, "critic_grad_norm": grad_norm, "td": masked, "v": v, "returns": returns}
    return masked, {k: t.detach() for k, t in stats.items()}


def ppo_inputs(learner, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(rewards, actions, mask [B, T-1, 1])`` of steps ``0..T-2`` as the host's PPO learner
    reads them (rewards standardised, and its running statistics updated, when it does)."""
    rewards = batch["reward"][:, :-1]
    actions = batch["actions"][:, :-1]
    terminated = batch["terminated"][:, :-1].float()
    mask = batch["filled"][:, :-1].float()
    mask[:, 1:] = mask[:, 1:] * (1 - terminated[:, :-1])
    if getattr(learner.args, "standardise_rewards", False):
        learner.rew_ms.update(rewards)
        rewards = (rewards - learner.rew_ms.mean) / torch.sqrt(learner.rew_ms.var)
    return rewards, actions, mask


def weighted_ppo_update(
    learner, batch, weights: torch.Tensor, t_env: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``args.epochs`` PPO epochs of ``learner`` (the host's PPOLearner) with per-episode
    IS weights in both the clipped policy loss and the critic's TD loss:

        L_pi = -sum w_b m [min(rho A, clip(rho, 1-eps, 1+eps) A) + c_H H(pi)] / sum m
        L_V  =  sum w_b m (G^(n) - V)^2 / sum m

    Returns ``(masked critic TD [B, T-1, N], mask [B, T-1])`` of the last epoch.
    """
    args = learner.args
    n = learner.n_agents
    rewards, actions, mask = ppo_inputs(learner, batch)
    step_mask = mask.squeeze(-1).bool()
    mask = mask.repeat(1, 1, n)
    w = weights.to(mask.device, mask.dtype).reshape(-1, 1, 1)

    with torch.no_grad():
        old_pi = _forward_steps(learner.old_mac, batch)
        old_pi[mask == 0] = 1.0
        old_log_pi = torch.log(torch.gather(old_pi, dim=3, index=actions).squeeze(3) + 1e-10)

    for _ in range(args.epochs):
        pi = _forward_steps(learner.mac, batch)
        advantages, critic = _critic_step(learner, batch, rewards, mask, w)
        advantages = advantages.detach()
        pi[mask == 0] = 1.0
        log_pi = torch.log(torch.gather(pi, dim=3, index=actions).squeeze(3) + 1e-10)
        ratios = torch.exp(log_pi - old_log_pi)
        surr1 = ratios * advantages
        surr2 = torch.clamp(ratios, 1 - args.eps_clip, 1 + args.eps_clip) * advantages
        entropy = -torch.sum(pi * torch.log(pi + 1e-10), dim=-1)
        pg_loss = -(w * (torch.min(surr1, surr2) + args.entropy_coef * entropy) * mask).sum() / mask.sum()
        learner.agent_optimiser.zero_grad()
        pg_loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(learner.agent_params, args.grad_norm_clip)
        learner.agent_optimiser.step()

    learner.old_mac.load_state(learner.mac)
    _step_targets(learner, "critic_training_steps")

    log_ppo_stats(learner, t_env, mask, critic, advantages, pg_loss, grad_norm, pi)
    return advantages, step_mask


def log_ppo_stats(learner, t_env: int, mask, critic, advantages, pg_loss, grad_norm, pi, **extra) -> bool:
    """The host PPO learner's stats every ``learner_log_interval`` steps (its names), plus
    ``extra`` floats; returns whether it logged."""
    if t_env - learner.log_stats_t < learner.args.learner_log_interval:
        return False
    m = mask.sum().item()
    log = learner.logger.log_stat
    log("critic_loss", critic["critic_loss"].item(), t_env)
    log("critic_grad_norm", critic["critic_grad_norm"].item(), t_env)
    log("td_error_abs", critic["td"].abs().sum().item() / m, t_env)
    log("q_taken_mean", (critic["v"] * mask).sum().item() / m, t_env)
    log("target_mean", (critic["returns"] * mask).sum().item() / m, t_env)
    log("advantage_mean", (advantages * mask).sum().item() / m, t_env)
    log("pg_loss", pg_loss.item(), t_env)
    log("agent_grad_norm", grad_norm.item(), t_env)
    log("pi_max", (pi.max(dim=-1)[0] * mask).sum().item() / m, t_env)
    for name, value in extra.items():
        log(name, value, t_env)
    learner.log_stats_t = t_env
    return True


# What the weighted updates read of the host learner and its args (EPyMARL's v2 learners and
# PyMARLzoo+'s have all of it); checked when the learner is built, before any training.
_NEEDS = {
    "q": (
        ("mac", "target_mac", "mixer", "optimiser", "params", "logger", "log_stats_t",
         "training_steps", "last_target_update_step", "_update_targets_hard", "_update_targets_soft"),
        ("gamma", "double_q", "grad_norm_clip", "target_update_interval_or_tau", "learner_log_interval",
         "n_agents"),
    ),
    "ppo": (
        ("mac", "old_mac", "critic", "target_critic", "agent_optimiser", "agent_params", "critic_optimiser",
         "critic_params", "nstep_returns", "n_agents", "logger", "log_stats_t", "critic_training_steps",
         "last_target_update_step", "_update_targets_hard", "_update_targets_soft"),
        ("gamma", "epochs", "eps_clip", "entropy_coef", "q_nstep", "grad_norm_clip",
         "target_update_interval_or_tau", "learner_log_interval"),
    ),
}  # fmt: skip


def check_host_learner(inner, kind: str) -> None:
    """Raise if the host learner ``inner`` (``kind`` "q" or "ppo") lacks an attribute or an
    ``args`` field that the weighted update reads (another EPyMARL version), naming them all."""
    attrs, fields = _NEEDS[kind]
    args = getattr(inner, "args", None)
    stats = (("standardise_rewards", "rew_ms"), ("standardise_returns", "ret_ms"))
    attrs += tuple(stat for flag, stat in stats if getattr(args, flag, False))  # running statistics
    if getattr(inner, "mixer", None) is not None:
        attrs += ("target_mixer",)
    missing = [a for a in attrs if not hasattr(inner, a)]
    missing += [f"args.{f}" for f in fields if not hasattr(args, f)]
    if missing:
        raise ValueError(
            f"hetplug: the host's {type(inner).__module__}.{type(inner).__name__} has no "
            f"{', '.join(missing)}; hetplug's weighted update follows EPyMARL's v2 learners "
            "(and PyMARLzoo+'s), so this host version is not supported"
        )
