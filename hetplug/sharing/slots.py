"""Dynamic parameter sharing without rebuilding anything: networks live in preallocated slots.

A host keeps its per-network parameters stacked, ``[n_slots, ...]`` each, and routes agent
i to slot ``routing[i]`` (gathering ``params[routing]``). Gradients of all agents routed to
one slot accumulate there, which is parameter sharing inside a group. A
:class:`~hetplug.sharing.SharingPlan` then becomes in-place tensor operations:
:class:`ParameterSlots` mixes the slots of every parameter, of the optimiser's per-parameter
state (Adam's ``exp_avg`` and ``exp_avg_sq`` are copied or merged with the same weights)
and of target networks, and rewrites the routing vectors. The optimiser object, its
parameter list and the host's modules stay as they are.

:class:`SlotMLP` is a ready-made slot model: an MLP whose layers are stacked per slot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from hetplug._checks import check_choice, check_int, check_tensor
from hetplug.sharing.plan import SharingPlan


def _as_list(items: object) -> list:
    if items is None:
        return []
    if isinstance(items, (torch.Tensor, torch.optim.Optimizer)):
        return [items]
    return list(items)  # type: ignore[arg-type]


class ParameterSlots:
    """Applies sharing plans in place to stacked parameters, optimiser state and targets.

    Args:
        params: tensors (usually ``nn.Parameter``) whose dim 0 is the slot.
        optimizers: optimiser(s) over (some of) ``params``; state tensors shaped like
            their parameter are mixed, scalars (Adam's ``step``) are left alone.
        targets: more tensors with the same slot dim 0 (target networks' parameters).
        routing: int64 ``[N]`` tensors to overwrite with the plan's agent -> slot map.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        optimizers: torch.optim.Optimizer | Iterable[torch.optim.Optimizer] | None = None,
        targets: Iterable[torch.Tensor] | None = None,
        routing: torch.Tensor | Iterable[torch.Tensor] | None = None,
    ) -> None:
        self.params = _as_list(params)
        self.targets = _as_list(targets)
        self.optimizers = _as_list(optimizers)
        self.routing = _as_list(routing)
        if not self.params:
            raise ValueError("params must hold the stacked per-slot parameters, got params=[]")
        for name, group in (("params", self.params), ("targets", self.targets)):
            for k, t in enumerate(group):
                check_tensor(f"{name}[{k}]", t, dtype="floating")
        self.n_slots = self.params[0].shape[0] if self.params[0].dim() else 0
        for name, group in (("params", self.params), ("targets", self.targets)):
            for k, t in enumerate(group):
                if t.dim() == 0 or t.shape[0] != self.n_slots:
                    raise ValueError(
                        f"{name}[{k}] must have the slot dim first ({self.n_slots}), got {name}[{k}] of shape "
                        f"{tuple(t.shape)}"
                    )
        for k, r in enumerate(self.routing):
            check_tensor(f"routing[{k}]", r, 1, "integer")
            if r.dtype != torch.int64:
                raise TypeError(
                    f"routing[{k}] must be an int64 [N] tensor, got routing[{k}] of dtype {r.dtype}"
                )
        for k, opt in enumerate(self.optimizers):
            if not isinstance(opt, torch.optim.Optimizer):
                raise TypeError(
                    f"optimizers[{k}] must be a torch.optim.Optimizer, got optimizers[{k}]={opt!r}"
                )

    def _state_tensors(self) -> list[torch.Tensor]:
        out = []
        ids = {id(p) for p in self.params}
        for opt in self.optimizers:
            for p, state in opt.state.items():
                if id(p) not in ids:
                    continue
                out.extend(v for v in state.values() if isinstance(v, torch.Tensor) and v.shape == p.shape)
        return out

    @torch.no_grad()
    def apply(self, plan: SharingPlan) -> None:
        """Copy/merge slots as ``plan`` says and route agents to their new slots.

        The plan is validated whole first (slots in range, weights finite and summing to
        1, one agent per routing entry): a bad plan changes no parameter, optimiser
        state, target or routing."""
        if not isinstance(plan, SharingPlan):
            raise TypeError(f"plan must be a hetplug.sharing.SharingPlan, got plan={plan!r}")
        plan.validate()
        if plan.n_slots != self.n_slots:
            raise ValueError(
                f"plan.n_slots must equal the parameters' {self.n_slots} slots, got plan.n_slots={plan.n_slots}"
            )
        for k, r in enumerate(self.routing):
            if r.shape[0] != len(plan.assignment):
                raise ValueError(
                    f"plan.assignment must have one slot per agent of routing[{k}] ({r.shape[0]}), got "
                    f"plan.assignment={list(plan.assignment)}"
                )
        rows = sorted({op.dst for op in plan.operations})
        if rows:
            tensors = self.params + self.targets + self._state_tensors()
            mixing = plan.mixing(torch.float64)
            rows_t = torch.tensor(rows)
            for t in tensors:
                w = mixing[rows_t].to(t.device, t.dtype)  # [R, n_slots]
                t[rows_t.to(t.device)] = (w @ t.reshape(self.n_slots, -1)).reshape(len(rows), *t.shape[1:])
        for r in self.routing:
            r.copy_(plan.routing(r.device))


class SlotMLP(nn.Module):
    """An MLP with one set of weights per slot; agent i uses slot ``routing[i]``.

    ``forward(x [..., N, in_dim]) -> [..., N, out_dim]``. Slots are initialised
    independently (like separate ``nn.Linear`` stacks), so ``start="none"`` is no sharing
    and ``start="full"`` routes every agent to slot 0. Wrap it for plans with
    ``ParameterSlots(model.parameters(), optimizer, routing=model.routing)``.
    """

    def __init__(
        self,
        n_agents: int,
        in_dim: int,
        out_dim: int,
        hidden: Sequence[int] = (64, 64),
        n_slots: int | None = None,
        activation: type[nn.Module] = nn.Tanh,
        start: str = "full",
    ) -> None:
        super().__init__()
        check_int("n_agents", n_agents, 1)
        check_choice("start", start, ("full", "none"))
        n_slots = n_agents if n_slots is None else n_slots
        check_int("n_slots", n_slots, 1)
        if start == "none" and n_slots < n_agents:
            raise ValueError(
                f"start='none' needs n_slots >= n_agents, got n_slots={n_slots}, n_agents={n_agents}"
            )
        dims = [in_dim, *hidden, out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            bound = a**-0.5
            self.weights.append(nn.Parameter(torch.empty(n_slots, a, b).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n_slots, b).uniform_(-bound, bound)))
        self.activation = activation()
        routing = torch.zeros(n_agents, dtype=torch.int64) if start == "full" else torch.arange(n_agents)
        self.register_buffer("routing", routing)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        last = len(self.weights) - 1
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            # [..., N, a] x [N, a, b] -> [..., N, b]: each agent through its slot's layer.
            h = torch.einsum("...na,nab->...nb", h, w[self.routing]) + b[self.routing]
            if k < last:
                h = self.activation(h)
        return h
