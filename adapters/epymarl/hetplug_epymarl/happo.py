"""HAPPO for EPyMARL: sequential per-agent PPO updates weighted by the M factor.

Heterogeneous-Agent PPO (Kuba et al., ICLR 2022), the backbone of SHPPO (the SHPPO paper's
eq. (2)); reference: PKU-MARL/HARL (``harl/algorithms/actors/happo.py`` and the runner's
sequential update, ``harl/runners/on_policy_ha_runner.py``). :func:`install` registers it
in the host's learner registry as ``hetplug_happo`` (``learner: hetplug_happo`` in an
algorithm yaml; ``examples/epymarl/happo.yaml``), for runs with or without the ``hetplug``
key.

The learner is a subclass of the host's ``PPOLearner``: the same mac, old mac, critic,
optimisers, running statistics, target updates and checkpoints. One ``train(batch)``:

1. the order i_1..i_N is a random permutation of the agents (a generator seeded with
   ``args.seed``, so it changes between updates and repeats with the seed), or index
   order with ``happo_fixed_order: True``;
2. agent i_1 takes the host's ``epochs`` steps exactly as the host's PPO learner does,
   each beside one critic step whose advantages it uses: with one agent this *is* the
   host's PPO update (tested parameter for parameter);
3. after agent i_m's steps, ``M <- M * pi_new(a|o) / pi_old(a|o)`` for i_m on every step
   of the batch, both evaluated afresh (before and after its update, as HARL's runner);
   agents i_2..i_N then take ``epochs`` steps each with the loss
   ``-sum m [M min(r A, clip(r, 1 +- eps) A) + c_H H] / sum m`` on their own column, ``r``
   the ratio to the behaviour policy (the old mac) and ``A`` the critic's advantages of
   the same epoch.

Parameter-shared agents (``mac: basic_mac``; "HAPPO (share)", what SHPPO uses): the one
network is stepped by each agent in turn, as HARL's ``share_param`` runner does.
Non-shared agents (``mac: non_shared_mac``, ``agent: rnn_ns``: one network per agent in
``mac.agent.agents``): agent i's step moves only its own network. The mac concatenates the
agents' outputs, so the other networks get zero (not absent) gradients; they are dropped
before the step, so Adam leaves those parameters and their moments alone (HARL has one
optimiser per agent).
"""

from __future__ import annotations

import torch

from hetplug_epymarl.updates import _critic_step, _forward_steps, _step_targets, log_ppo_stats, ppo_inputs

#: the name in the host's learner registry
NAME = "hetplug_happo"


def happo_learner_class(ppo_learner: type) -> type:
    """HAPPO as a subclass of the host's ``PPOLearner`` (module docstring)."""

    class HAPPOLearner(ppo_learner):
        """Heterogeneous-Agent PPO on the host's PPO learner.

        Attributes:
            orders: the agent order of every update so far.
            last_factors: agent -> the M ``[B, T-1]`` it trained with in the last update
                (agent i_1 trains with M = 1 and has none).
        """

        hetplug_happo = True

        def __init__(self, mac, scheme, logger, args) -> None:
            super().__init__(mac, scheme, logger, args)
            self.order_generator = torch.Generator().manual_seed(int(getattr(args, "seed", 0) or 0))
            self.orders: list[list[int]] = []
            self.last_factors: dict[int, torch.Tensor] = {}

        def agent_order(self) -> list[int]:
            if getattr(self.args, "happo_fixed_order", False):
                return list(range(self.n_agents))
            return torch.randperm(self.n_agents, generator=self.order_generator).tolist()

        def _other_networks(self, agent: int) -> list[torch.nn.Parameter]:
            """The parameters of the other agents' networks (non-shared agents, whose module
            holds one network per agent in ``agents``); none for a shared network."""
            nets = getattr(self.mac.agent, "agents", None)
            if not isinstance(nets, torch.nn.ModuleList) or len(nets) != self.n_agents:
                return []
            return [p for j, net in enumerate(nets) if j != agent for p in net.parameters()]

        def _log_pi_taken(self, mac, batch, actions, mask) -> tuple[torch.Tensor, torch.Tensor]:
            """``(log pi(a|o) [B, T-1, N], pi [B, T-1, N, A])`` of ``mac`` (masked steps: pi 1)."""
            pi = _forward_steps(mac, batch)
            pi[mask == 0] = 1.0
            return torch.log(torch.gather(pi, dim=3, index=actions).squeeze(3) + 1e-10), pi

        def train(self, batch, t_env: int, episode_num: int):
            args, n = self.args, self.n_agents
            rewards, actions, mask = ppo_inputs(self, batch)
            mask = mask.repeat(1, 1, n)
            ones = torch.ones(batch.batch_size, 1, 1, device=mask.device, dtype=mask.dtype)
            with torch.no_grad():
                old_log_pi, _ = self._log_pi_taken(self.old_mac, batch, actions, mask)

            order = self.agent_order()
            self.orders.append(order)
            self.last_factors = {}
            advantages_per_epoch: list[torch.Tensor] = []
            critic: dict[str, torch.Tensor] = {}
            factor = None  # M of the agents updated so far, [B, T-1]
            for m, agent in enumerate(order):
                later = m + 1 < n
                if later:
                    with torch.no_grad():
                        before, _ = self._log_pi_taken(self.mac, batch, actions, mask)
                for epoch in range(args.epochs):
                    log_pi, pi = self._log_pi_taken(self.mac, batch, actions, mask)
                    if m == 0:  # the critic steps beside agent i_1, as the host's PPO learner
                        advantages, critic = _critic_step(self, batch, rewards, mask, ones)
                        advantages_per_epoch.append(advantages.detach())
                    advantages = advantages_per_epoch[epoch]
                    ratios = torch.exp(log_pi - old_log_pi)
                    surr1 = ratios * advantages
                    surr2 = torch.clamp(ratios, 1 - args.eps_clip, 1 + args.eps_clip) * advantages
                    entropy = -torch.sum(pi * torch.log(pi + 1e-10), dim=-1)
                    gain = torch.min(surr1, surr2)[..., agent]
                    if factor is not None:  # eq. (2): M min(r A, clip(r) A), M > 0
                        gain = gain * factor
                    own = mask[..., agent]
                    pg_loss = -((gain + args.entropy_coef * entropy[..., agent]) * own).sum() / own.sum()
                    self.agent_optimiser.zero_grad()
                    pg_loss.backward()
                    for p in self._other_networks(agent):  # zero gradients (the mac's cat), not
                        p.grad = None  # none: Adam would move them by momentum; now it skips them
                    grad_norm = torch.nn.utils.clip_grad_norm_(self.agent_params, args.grad_norm_clip)
                    self.agent_optimiser.step()
                if later:  # M^{i_1:m+1} = M^{i_1:m} * pi_new / pi_old of agent i_m, both fresh
                    with torch.no_grad():
                        after, _ = self._log_pi_taken(self.mac, batch, actions, mask)
                    ratio = torch.exp(after[..., agent] - before[..., agent])
                    factor = ratio if factor is None else factor * ratio
                    self.last_factors[order[m + 1]] = factor

            self.old_mac.load_state(self.mac)
            _step_targets(self, "critic_training_steps")

            extra = {}
            if factor is not None and t_env - self.log_stats_t >= args.learner_log_interval:
                # the M the last agent trained with, over valid steps
                extra["happo_factor_mean"] = (factor * mask[..., 0]).sum().item() / mask[..., 0].sum().item()
            log_ppo_stats(
                self, t_env, mask, critic, advantages_per_epoch[-1], pg_loss, grad_norm, pi, **extra
            )

    HAPPOLearner.__name__ = HAPPOLearner.__qualname__ = "HAPPOLearner"
    return HAPPOLearner
