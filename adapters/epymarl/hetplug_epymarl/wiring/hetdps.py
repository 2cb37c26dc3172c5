"""HetDPS's wiring: the parameter-shared agent with its weights in per-agent slots.

Needs from the host: the parameter-shared rnn agent (``mac: basic_mac``, ``agent: rnn``),
recurrent or not (``use_rnn``: EPyMARL's stock qmix.yaml and vdn.yaml set it False), and
the Q-learner or the PPO learner, whose optimiser and target (or old) mac follow the slots.

Installs:

* :class:`SlotRNNAgent` in the mac (:func:`slot_mac_class`). EPyMARL's ``rnn`` agent is
  ``fc1 -> ReLU -> GRUCell -> fc2`` (``use_rnn: True``) or ``fc1 -> ReLU -> Linear -> ReLU
  -> fc2`` (``use_rnn: False``) applied to ``[bs * N, in]`` rows; the slot agent is the
  same network with every weight stacked ``[n_slots, ...]``, and agent i uses slot
  ``routing[i]``. With one slot in use it computes exactly the host's ``rnn`` agent in
  either form (``tests/epymarl/test_hetdps.py`` checks it against the host's own module
  on the same weights);
* when the learner exists, its :class:`hetplug.sharing.ParameterSlots` (slot parameters,
  the optimiser's state, the target or old mac's slots and both routings), handed to the
  plugins through ``hetplug_bind``. A HetDPS plan then regroups agents by copying or
  merging slots in place: the optimiser and the macs are never rebuilt.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hetplug.sharing import ParameterSlots, SharingConfig


def _uniform(*shape: int, bound: float) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))


class SlotRNNAgent(nn.Module):
    """``forward(inputs [bs*N, in], hidden [bs, N, H] or [bs*N, H]) -> (q [bs*N, A], h [bs*N, H])``.

    ``use_rnn=True``: ``fc1 -> ReLU -> GRUCell -> fc2``; ``use_rnn=False``: ``fc1 -> ReLU ->
    Linear -> ReLU -> fc2`` (the hidden state is passed through unused, as the host's agent
    does). Slots are initialised like separate ``nn.Linear`` / ``nn.GRUCell`` layers.
    """

    def __init__(self, input_shape: int, n_agents: int, hidden_dim: int, n_actions: int,
                 n_slots: int, start: str = "full", use_rnn: bool = True) -> None:  # fmt: skip
        super().__init__()
        if not isinstance(input_shape, int):
            raise ValueError(
                f"hetdps: the slot agent takes vector observations, got input_shape={input_shape!r}"
            )
        S, i, h, a = n_slots, input_shape, hidden_dim, n_actions
        self.n_agents, self.hidden_dim, self.use_rnn = n_agents, hidden_dim, bool(use_rnn)
        self.fc1_w, self.fc1_b = _uniform(S, i, h, bound=i**-0.5), _uniform(S, h, bound=i**-0.5)
        g = h**-0.5  # GRUCell's init, and nn.Linear's for an h -> h layer
        if self.use_rnn:
            self.w_ih, self.b_ih = _uniform(S, h, 3 * h, bound=g), _uniform(S, 3 * h, bound=g)
            self.w_hh, self.b_hh = _uniform(S, h, 3 * h, bound=g), _uniform(S, 3 * h, bound=g)
        else:
            self.rnn_w, self.rnn_b = _uniform(S, h, h, bound=g), _uniform(S, h, bound=g)
        self.fc2_w, self.fc2_b = _uniform(S, h, a, bound=h**-0.5), _uniform(S, a, bound=h**-0.5)
        routing = torch.zeros(n_agents, dtype=torch.int64) if start == "full" else torch.arange(n_agents)
        self.register_buffer("routing", routing)

    def slot_parameters(self) -> list[nn.Parameter]:
        middle = [self.w_ih, self.b_ih, self.w_hh, self.b_hh] if self.use_rnn else [self.rnn_w, self.rnn_b]
        return [self.fc1_w, self.fc1_b, *middle, self.fc2_w, self.fc2_b]

    def init_hidden(self) -> torch.Tensor:
        return self.fc1_w.new_zeros(1, self.hidden_dim)

    def forward(self, inputs: torch.Tensor, hidden_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, r = self.n_agents, self.routing
        x = inputs.reshape(-1, n, inputs.shape[-1])  # rows are (batch, agent), agent fastest

        def linear(v, w, b):  # [bs, N, a] x [N, a, b] -> [bs, N, b], agent i through slot r[i]
            return torch.einsum("bna,nac->bnc", v, w[r]) + b[r]

        x = F.relu(linear(x, self.fc1_w, self.fc1_b))
        if self.use_rnn:
            h_in = hidden_state.reshape(-1, n, self.hidden_dim)
            i_r, i_z, i_n = linear(x, self.w_ih, self.b_ih).chunk(3, -1)
            h_r, h_z, h_n = linear(h_in, self.w_hh, self.b_hh).chunk(3, -1)
            reset = torch.sigmoid(i_r + h_r)
            update = torch.sigmoid(i_z + h_z)
            h = (1 - update) * torch.tanh(i_n + reset * h_n) + update * h_in
        else:
            h = F.relu(linear(x, self.rnn_w, self.rnn_b))
        q = linear(h, self.fc2_w, self.fc2_b)
        return q.reshape(-1, q.shape[-1]), h.reshape(-1, self.hidden_dim)


def slot_mac_class(base: type, n_slots: int | None, start: str) -> type:
    """A subclass of the host's parameter-shared mac whose agent is a :class:`SlotRNNAgent`
    in the form the config asks for (``use_rnn``; PyMARLzoo+'s mac only initialises hidden
    states for its own agent names, so the subclass does that too)."""

    class HetplugSlotMAC(base):
        def _build_agents(self, input_shape):
            a = self.args
            slots = a.n_agents if n_slots is None else n_slots
            self.agent = SlotRNNAgent(input_shape, a.n_agents, a.hidden_dim, a.n_actions, slots, start,
                                      use_rnn=getattr(a, "use_rnn", True))  # fmt: skip

        def init_hidden(self, batch_size):
            self.hidden_states = self.agent.init_hidden().unsqueeze(0).expand(batch_size, self.n_agents, -1)

    return HetplugSlotMAC


class HetDPSWiring:
    """The slot agent for the ``hetdps`` plugin (its ``n_slots`` and ``start`` options)."""

    name = "hetdps"

    def __init__(self, options: dict[str, Any]) -> None:
        sharing = SharingConfig(**{k: options[k] for k in ("start", "n_slots") if k in options})
        self.n_slots, self.start = sharing.n_slots, sharing.start

    def check(self, args: Any, host) -> None:
        host.require_q_or_ppo_learner(self.name, args)
        host.require_rnn_agent(self.name, args)

    def mac_class(self, base: type) -> type:
        return slot_mac_class(base, self.n_slots, self.start)

    def host_objects(self, learner) -> dict[str, Any]:
        """``parameter_slots``: the mac's slots, the optimiser's state, and the copies that
        must follow (the Q-learner's target mac, PPO's old mac)."""
        follower = learner.target_mac if hasattr(learner, "target_mac") else learner.old_mac
        optimiser = learner.optimiser if hasattr(learner, "optimiser") else learner.agent_optimiser
        agent, copy = learner.mac.agent, follower.agent
        slots = ParameterSlots(
            agent.slot_parameters(),
            optimiser,
            targets=copy.slot_parameters(),
            routing=[agent.routing, copy.routing],
        )
        return {"parameter_slots": slots}
