"""SHPPO's wiring: the parameter-shared actor with one HeteLayer, in place of ``rnn``.

Needs from the host: the parameter-shared rnn agent (``mac: basic_mac``, ``agent: rnn``)
and the PPO learner (MAPPO, IPPO) or hetplug's HAPPO learner (``learner: hetplug_happo``,
the paper's backbone, :mod:`hetplug_epymarl.happo`).

Installs:

* :class:`SHPPOAgent` in the mac (:func:`shppo_mac_class`), sized by the ``shppo`` options
  ``latent_dim`` and ``decoder_hidden`` (:class:`hetplug.shppo.SHPPOConfig`), with the
  ablations ``zero_latent_inputs`` and ``zero_latents`` applied;
* two more entries in the episode batch's scheme (group ``agents``): ``hetplug_latent``
  (``[B, T, N, L]``), the latent each agent acted with, and ``hetplug_memory``
  (``[B, T, N, H]``), the GRU state h^{t-1} its LatentNet read (:meth:`SHPPOWiring.scheme`;
  the adapter's buffer adds them to the scheme dict EPyMARL then gives its runner);
* when the learner exists, the agent's LatentNet, handed to the plugins through
  ``hetplug_bind`` (the ``shppo`` plugin trains it with its own optimiser);
* after each host update, for every plugin implementing ``hetplug_auxiliary_losses``
  (:class:`AuxiliaryLosses`): the batch just trained on, with the agent inputs and the
  stored memories the LatentNet read while acting.

:class:`SHPPOAgent` is ``fc -> ReLU -> GRUCell -> HeteLayer(l_i) -> ReLU -> fc`` on
EPyMARL's agent inputs (obs, last action, agent id), with the LatentNet of eq. (4) over
(input, h^{t-1}) giving each agent's (mu_i, sigma_i); the GRU's state is the host's hidden
state (``mac.hidden_states``). All weights but the HeteLayer's generated ones are shared.

**Acting** (``mac.select_actions``, Algorithm 1): ``l_i ~ N(mu_i, sigma_i)`` at every step
while exploring (``test_mode=False``), ``mu_i`` in test mode; the LatentNet runs without
gradient (eq. 13: the actor loss does not train it), and the latent is written into the
episode batch at that step. **Training** (``mac.forward`` outside ``select_actions``: the
learner's re-evaluation) runs the actor with the stored latent of each step, so the PPO
ratio compares the HeteLayer weights that acted.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import hetplug
from hetplug.shppo import LatentNet, SHPPOActor, SHPPOConfig
from hetplug_epymarl.episodes import step_fields

#: the episode batch entries holding, per step, each agent's latent and its memory h^{t-1}
LATENT = "hetplug_latent"
MEMORY = "hetplug_memory"


class SHPPOAgent(nn.Module):
    """``forward(inputs [bs*N, in], hidden [bs, N, H] or [bs*N, H]) -> (out [bs*N, A], h [bs*N, H])``.

    The latent of a call is set beforehand by the mac: :meth:`act` (draw it from the
    LatentNet, sampled when ``explore``) or :meth:`replay` (the stored ``[bs, N, L]``).
    Without either, it acts deterministically with mu. ``last_latent`` is the latent of
    the latest call.
    """

    def __init__(self, input_shape: int, n_agents: int, hidden_dim: int, n_actions: int,
                 latent_dim: int = 3, decoder_hidden: int = 64, zero_latent_inputs: bool = False,
                 zero_latents: bool = False) -> None:  # fmt: skip
        super().__init__()
        if not isinstance(input_shape, int):
            raise ValueError(
                f"shppo: the SHPPO agent takes vector observations, got input_shape={input_shape!r}"
            )
        self.n_agents, self.hidden_dim, self.latent_dim = n_agents, hidden_dim, latent_dim
        self.latent_net = LatentNet(input_shape, hidden_dim, latent_dim, zero_inputs=zero_latent_inputs)
        self.actor = SHPPOActor(input_shape, n_actions, hidden_dim, trunk_layers=1, rnn=True,
                                latent_dim=latent_dim, decoder_hidden=decoder_hidden,
                                zero_latents=zero_latents)  # fmt: skip
        self.last_latent: torch.Tensor | None = None  # [bs, N, L] of the latest call
        self._explore = False
        self._stored: torch.Tensor | None = None

    def act(self, explore: bool) -> None:
        """The next call draws its latent from the LatentNet: sampled if ``explore``, else mu."""
        self._explore, self._stored = explore, None

    def replay(self, latent: torch.Tensor) -> None:
        """The next call uses ``latent`` ``[bs, N, L]`` (the latents stored with the step)."""
        self._stored = latent

    def init_hidden(self) -> torch.Tensor:
        return self.actor.head.weight.new_zeros(1, self.hidden_dim)

    def forward(self, inputs: torch.Tensor, hidden_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.n_agents
        x = inputs.reshape(-1, n, inputs.shape[-1])
        h_prev = hidden_state.reshape(-1, n, self.hidden_dim)
        if self._stored is not None:
            latent, self._stored = self._stored.reshape(-1, n, self.latent_dim).to(x), None
        else:
            with torch.no_grad():  # eq. (13): the actor sees the latent as a constant
                mu, sigma = self.latent_net(x, h_prev)
                latent = LatentNet.acting_latent(mu, sigma, self._explore)
        self._explore = False
        self.last_latent = latent
        out, h = self.actor(x, latent, h_prev)
        return out.reshape(-1, out.shape[-1]), h.reshape(-1, self.hidden_dim)


def shppo_mac_class(base: type, config: SHPPOConfig) -> type:
    """A subclass of the host's parameter-shared mac whose agent is a :class:`SHPPOAgent`:
    it samples latents while acting and stores them in the episode batch, and re-evaluates
    with the stored ones."""

    class HetplugSHPPOMAC(base):
        _acting: bool | None = None  # select_actions in progress: its test_mode

        def _build_agents(self, input_shape):
            a = self.args
            self.agent = SHPPOAgent(
                input_shape, a.n_agents, a.hidden_dim, a.n_actions, config.latent_dim, config.decoder_hidden,
                config.zero_latent_inputs, config.zero_latents,
            )  # fmt: skip

        def init_hidden(self, batch_size):
            self.hidden_states = self.agent.init_hidden().unsqueeze(0).expand(batch_size, self.n_agents, -1)

        def select_actions(self, ep_batch, t_ep, t_env, bs=slice(None), test_mode=False, **kwargs):
            memory = self.hidden_states  # h^{t-1}, what the LatentNet reads
            self._acting = bool(test_mode)
            try:
                chosen = super().select_actions(ep_batch, t_ep, t_env, bs=bs, test_mode=test_mode, **kwargs)
            finally:
                self._acting = None
            if LATENT in ep_batch.scheme:  # the step's latent and memory, stored with it
                step = {LATENT: self.agent.last_latent[bs]}
                if MEMORY in ep_batch.scheme and memory is not None:
                    step[MEMORY] = memory.reshape(ep_batch.batch_size, self.n_agents, -1)[bs].detach()
                ep_batch.update(step, bs=bs, ts=t_ep, mark_filled=False)
            return chosen

        def forward(self, ep_batch, t, test_mode=False, **kwargs):
            if self._acting is not None:
                self.agent.act(explore=not self._acting)
            elif LATENT in ep_batch.scheme:
                self.agent.replay(ep_batch[LATENT][:, t])
            else:
                raise KeyError(
                    f"shppo: this episode batch has no {LATENT!r} entry (the latents the agents "
                    "acted with), so the policy cannot be re-evaluated as it acted"
                )
            return super().forward(ep_batch, t, test_mode=test_mode, **kwargs)

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
        self.config = SHPPOConfig(**options)
        self.latent_dim, self.decoder_hidden = self.config.latent_dim, self.config.decoder_hidden

    def check(self, args: Any, host) -> None:
        host.require_rnn_agent(self.name, args)
        if host.learner_kind(args) not in ("ppo", "happo"):
            raise ValueError(
                "hetplug.plugins: 'shppo' is an actor for the PPO learner (mappo, ippo) or hetplug's "
                f"HAPPO (learner: hetplug_happo); this config has learner={getattr(args, 'learner', None)!r}"
            )

    def scheme(self, args: Any) -> dict[str, dict]:
        """Entries the episode batch needs: the latent each agent acted with and the memory
        h^{t-1} its LatentNet read (Algorithm 2 stores both)."""
        return {
            LATENT: {"vshape": (self.latent_dim,), "group": "agents"},
            MEMORY: {"vshape": (int(args.hidden_dim),), "group": "agents"},
        }

    def mac_class(self, base: type) -> type:
        return shppo_mac_class(base, self.config)

    def host_objects(self, learner) -> dict[str, Any]:
        return {"latent_net": learner.mac.agent.latent_net}


class AuxiliaryLosses:
    """``hetplug_auxiliary_losses`` after each host update, on the batch it trained on."""

    def __init__(self, pm, metrics) -> None:
        self.pm = pm
        self.metrics = metrics  # the session's MetricsLog

    def batch(self, mac, batch) -> hetplug.TrajectoryBatch:
        """``obs``: the agent inputs ``[B, T, N, in]``; ``extra["hidden_state"]``: the memory
        ``[B, T, N, H]`` before each step (what the LatentNet saw while acting: stored with
        the step, or replayed through the mac for episodes stored without it)."""
        if MEMORY in batch.scheme:
            B, n = batch.batch_size, mac.n_agents
            steps = range(batch.max_seq_length)
            inputs = torch.stack([mac._build_inputs(batch, t).reshape(B, n, -1) for t in steps], 1)
            memory = batch[MEMORY]
        else:
            inputs, memory = agent_inputs_and_memory(mac, batch)
        return hetplug.TrajectoryBatch(
            **step_fields(batch), obs=inputs, state=batch["state"], extra={"hidden_state": memory}
        )

    def train(self, mac, batch, update: int) -> None:
        for out in self.pm.hook.hetplug_auxiliary_losses(batch=self.batch(mac, batch), update=update):
            self.metrics.update(out)
