"""HetDPS in EPyMARL: the parameter-shared RNN agent with its weights in per-agent slots.

EPyMARL's ``rnn`` agent is ``fc1 -> ReLU -> GRUCell -> fc2`` applied to ``[bs * N, in]``
rows. :class:`SlotRNNAgent` is the same network with every weight stacked ``[n_slots,
...]``; agent i uses slot ``routing[i]``. All agents in one slot share parameters, and a
HetDPS plan regroups agents by copying/merging slots in place
(:class:`hetplug.sharing.ParameterSlots`), so the learner's optimiser and the target (or
old) mac are never rebuilt. With one slot in use it computes exactly EPyMARL's ``rnn``
agent (``tests/test_epymarl.py`` checks it against ``nn.Linear``/``nn.GRUCell``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _uniform(*shape: int, bound: float) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))


class SlotRNNAgent(nn.Module):
    """``forward(inputs [bs*N, in], hidden [bs, N, H] or [bs*N, H]) -> (q [bs*N, A], h [bs*N, H])``.

    Slots are initialised like separate ``nn.Linear`` / ``nn.GRUCell`` layers.
    """

    def __init__(self, input_shape: int, n_agents: int, hidden_dim: int, n_actions: int,
                 n_slots: int, start: str = "full") -> None:  # fmt: skip
        super().__init__()
        if not isinstance(input_shape, int):
            raise ValueError(
                f"hetdps: the slot agent takes vector observations, got input_shape={input_shape!r}"
            )
        S, i, h, a = n_slots, input_shape, hidden_dim, n_actions
        self.n_agents, self.hidden_dim = n_agents, hidden_dim
        self.fc1_w, self.fc1_b = _uniform(S, i, h, bound=i**-0.5), _uniform(S, h, bound=i**-0.5)
        g = h**-0.5  # GRUCell's init
        self.w_ih, self.b_ih = _uniform(S, h, 3 * h, bound=g), _uniform(S, 3 * h, bound=g)
        self.w_hh, self.b_hh = _uniform(S, h, 3 * h, bound=g), _uniform(S, 3 * h, bound=g)
        self.fc2_w, self.fc2_b = _uniform(S, h, a, bound=h**-0.5), _uniform(S, a, bound=h**-0.5)
        routing = torch.zeros(n_agents, dtype=torch.int64) if start == "full" else torch.arange(n_agents)
        self.register_buffer("routing", routing)

    def slot_parameters(self) -> list[nn.Parameter]:
        return [self.fc1_w, self.fc1_b, self.w_ih, self.b_ih, self.w_hh, self.b_hh, self.fc2_w, self.fc2_b]

    def init_hidden(self) -> torch.Tensor:
        return self.fc1_w.new_zeros(1, self.hidden_dim)

    def forward(self, inputs: torch.Tensor, hidden_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, r = self.n_agents, self.routing
        x = inputs.reshape(-1, n, inputs.shape[-1])  # rows are (batch, agent), agent fastest
        h_in = hidden_state.reshape(-1, n, self.hidden_dim)

        def linear(v, w, b):  # [bs, N, a] x [N, a, b] -> [bs, N, b], agent i through slot r[i]
            return torch.einsum("bna,nac->bnc", v, w[r]) + b[r]

        x = F.relu(linear(x, self.fc1_w, self.fc1_b))
        i_r, i_z, i_n = linear(x, self.w_ih, self.b_ih).chunk(3, -1)
        h_r, h_z, h_n = linear(h_in, self.w_hh, self.b_hh).chunk(3, -1)
        reset = torch.sigmoid(i_r + h_r)
        update = torch.sigmoid(i_z + h_z)
        h = (1 - update) * torch.tanh(i_n + reset * h_n) + update * h_in
        q = linear(h, self.fc2_w, self.fc2_b)
        return q.reshape(-1, q.shape[-1]), h.reshape(-1, self.hidden_dim)


def bind_slots(plugin, learner) -> None:
    """Hand the hetdps plugin the slot parameters of ``learner``'s mac, its optimiser's
    state and the copies that must follow (the Q-learner's target mac, PPO's old mac)."""
    from hetplug.sharing import ParameterSlots

    follower = learner.target_mac if hasattr(learner, "target_mac") else learner.old_mac
    optimiser = learner.optimiser if hasattr(learner, "optimiser") else learner.agent_optimiser
    agent, copy = learner.mac.agent, follower.agent
    plugin.bind(
        ParameterSlots(
            agent.slot_parameters(),
            optimiser,
            targets=copy.slot_parameters(),
            routing=[agent.routing, copy.routing],
        )  # fmt: skip
    )


def slot_mac_class(base: type, n_slots: int | None, start: str) -> type:
    """A subclass of the host's parameter-shared mac whose agent is a :class:`SlotRNNAgent`
    (PyMARLzoo+'s mac only initialises hidden states for its own agent names, so the
    subclass does that too)."""

    class HetplugSlotMAC(base):
        def _build_agents(self, input_shape):
            a = self.args
            if not getattr(a, "use_rnn", True):
                raise ValueError("hetdps: the slot agent is recurrent; set use_rnn: True")
            slots = a.n_agents if n_slots is None else n_slots
            self.agent = SlotRNNAgent(input_shape, a.n_agents, a.hidden_dim, a.n_actions, slots, start)

        def init_hidden(self, batch_size):
            self.hidden_states = self.agent.init_hidden().unsqueeze(0).expand(batch_size, self.n_agents, -1)

    return HetplugSlotMAC
