"""SHPPO's wiring: the parameter-shared actor with one HeteLayer, in place of ``rnn``.

Needs from the host: the parameter-shared rnn agent (``mac: basic_mac``, ``agent: rnn``)
and the PPO learner (MAPPO, IPPO).

Installs:

* :class:`SHPPOAgent` in the mac (:func:`shppo_mac_class`), sized by the ``shppo`` options
  ``latent_dim`` and ``decoder_hidden`` (:class:`hetplug.shppo.SHPPOConfig`);
* when the learner exists, the agent's LatentNet, handed to the plugins through
  ``hetplug_bind`` (the ``shppo`` plugin trains it with its own optimiser);
* after each host update, for every plugin implementing ``hetplug_auxiliary_losses``
  (:class:`AuxiliaryLosses`): the batch just trained on, with the agent inputs and the
  recurrent memories the actor saw while acting.

:class:`SHPPOAgent` is ``fc -> ReLU -> GRUCell -> HeteLayer(l_i) -> ReLU -> fc`` on
EPyMARL's agent inputs (obs, last action, agent id), with the LatentNet of eq. (4) over
(input, h^{t-1}) giving each agent's (mu_i, sigma_i). All weights but the HeteLayer's
generated ones are shared.

The actor uses ``l_i = mu_i``, detached (eq. 13: the actor loss does not train the
LatentNet). EPyMARL's episode batch has no field for a sampled latent, so acting with the
mean keeps the policy the learner re-evaluates identical to the one that acted (the PPO
ratio compares the same network); the plugin's latent losses (eqs. 7-10) use sampled
latents. The LatentNet is trained only by the ``shppo`` plugin with its own optimiser
(its parameters get no gradient from the host's losses).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import hetplug
from hetplug.shppo import LatentNet, SHPPOActor, SHPPOConfig
from hetplug_epymarl.episodes import step_fields


class SHPPOAgent(nn.Module):
    """``forward(inputs [bs*N, in], hidden [bs, N, H] or [bs*N, H]) -> (out [bs*N, A], h [bs*N, H])``."""

    def __init__(self, input_shape: int, n_agents: int, hidden_dim: int, n_actions: int,
                 latent_dim: int = 3, decoder_hidden: int = 64) -> None:  # fmt: skip
        super().__init__()
        if not isinstance(input_shape, int):
            raise ValueError(
                f"shppo: the SHPPO agent takes vector observations, got input_shape={input_shape!r}"
            )
        self.n_agents, self.hidden_dim = n_agents, hidden_dim
        self.latent_net = LatentNet(input_shape, hidden_dim, latent_dim)
        self.actor = SHPPOActor(input_shape, n_actions, hidden_dim, trunk_layers=1, rnn=True,
                                latent_dim=latent_dim, decoder_hidden=decoder_hidden)  # fmt: skip
        self.last_mu: torch.Tensor | None = None  # [bs, N, L] of the latest step, for inspection

    def init_hidden(self) -> torch.Tensor:
        return self.actor.head.weight.new_zeros(1, self.hidden_dim)

    def forward(self, inputs: torch.Tensor, hidden_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.n_agents
        x = inputs.reshape(-1, n, inputs.shape[-1])
        h_prev = hidden_state.reshape(-1, n, self.hidden_dim)
        with torch.no_grad():  # eq. (13): the actor sees the latent as a constant
            mu, _ = self.latent_net(x, h_prev)
        self.last_mu = mu
        out, h = self.actor(x, mu, h_prev)
        return out.reshape(-1, out.shape[-1]), h.reshape(-1, self.hidden_dim)


def shppo_mac_class(base: type, latent_dim: int, decoder_hidden: int) -> type:
    """A subclass of the host's parameter-shared mac whose agent is a :class:`SHPPOAgent`."""

    class HetplugSHPPOMAC(base):
        def _build_agents(self, input_shape):
            a = self.args
            self.agent = SHPPOAgent(
                input_shape, a.n_agents, a.hidden_dim, a.n_actions, latent_dim, decoder_hidden
            )

        def init_hidden(self, batch_size):
            self.hidden_states = self.agent.init_hidden().unsqueeze(0).expand(batch_size, self.n_agents, -1)

    return HetplugSHPPOMAC


@torch.no_grad()
def agent_inputs_and_memory(mac, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """``([B, T, N, in] agent inputs, [B, T, N, H] hidden state before each step)`` of
    ``mac`` over ``batch``: what the LatentNet saw while acting."""
    B, T, n = batch.batch_size, batch.max_seq_length, mac.n_agents
    mac.init_hidden(B)
    inputs, memory = [], []
    for t in range(T):
        inputs.append(mac._build_inputs(batch, t).reshape(B, n, -1))
        memory.append(mac.hidden_states.reshape(B, n, -1))
        mac.forward(batch, t=t)
    return torch.stack(inputs, 1), torch.stack(memory, 1)


class SHPPOWiring:
    """The SHPPO actor for the ``shppo`` plugin."""

    name = "shppo"

    def __init__(self, options: dict[str, Any]) -> None:
        config = SHPPOConfig(**options)
        self.latent_dim, self.decoder_hidden = config.latent_dim, config.decoder_hidden

    def check(self, args: Any, host) -> None:
        host.require_q_or_ppo_learner(self.name, args)
        host.require_rnn_agent(self.name, args)
        if host.learner_kind(args) != "ppo":
            raise ValueError(
                "hetplug.plugins: 'shppo' is an actor for the PPO learner (mappo, ippo); this config "
                f"has learner={getattr(args, 'learner', None)!r}"
            )

    def mac_class(self, base: type) -> type:
        return shppo_mac_class(base, self.latent_dim, self.decoder_hidden)

    def host_objects(self, learner) -> dict[str, Any]:
        return {"latent_net": learner.mac.agent.latent_net}


class AuxiliaryLosses:
    """``hetplug_auxiliary_losses`` after each host update, on the batch it trained on."""

    def __init__(self, pm, metrics) -> None:
        self.pm = pm
        self.metrics = metrics  # the session's MetricsLog

    def batch(self, mac, batch) -> hetplug.TrajectoryBatch:
        """``obs``: the agent inputs ``[B, T, N, in]``; ``extra["hidden_state"]``: the memory
        ``[B, T, N, H]`` before each step (what the LatentNet saw while acting)."""
        inputs, memory = agent_inputs_and_memory(mac, batch)
        return hetplug.TrajectoryBatch(
            **step_fields(batch), obs=inputs, state=batch["state"], extra={"hidden_state": memory}
        )

    def train(self, mac, batch, update: int) -> None:
        for out in self.pm.hook.hetplug_auxiliary_losses(batch=self.batch(mac, batch), update=update):
            self.metrics.update(out)
