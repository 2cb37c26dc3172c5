"""Per-agent replay buffers: one ring of ``capacity`` transitions per agent, over tensors.

LBS (section 3) keeps a buffer per agent. The agents of one environment step in lockstep,
so the M rings advance together: slot ``s`` of every ring was written by the same
``add`` call. Storage is one tensor per field shaped ``[M, capacity, *item_shape]``,
allocated on the first ``add`` (so a field's shape and dtype come from the data), and
``gather(sources, slots)`` reads any mix of agents' transitions in one indexing op.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from hetplug._checks import check_bool, check_device, check_int, check_tensor, check_values, short_repr
from hetplug.state import require_keys, state_equal, state_int


def check_homogeneous_agents(field: str, shapes: Sequence[Any]) -> None:
    """Raise ``ValueError`` unless every agent's ``field`` has the same shape (or space).

    LBS lets agent i learn from agent k's transitions, which only makes sense for
    homogeneous agents in an anonymous environment: the same observation and action
    spaces. Adapters call this with the host's per-agent specs.
    """
    if len(shapes) == 0:
        raise ValueError(f"{field}: no agents given")
    first = shapes[0]
    for k, shape in enumerate(shapes):
        if shape != first:
            raise ValueError(
                f"LBS needs homogeneous agents (same observation and action spaces): {field} of "
                f"agent {k} is {shape!r} but agent 0 has {first!r}"
            )


class AgentBuffers:
    """M per-agent rings of transitions, written in lockstep.

    Args:
        n_agents: M.
        capacity: transitions kept per agent; the oldest are overwritten.
        device: where the storage lives.
        check_inputs: :meth:`gather` refuses agents and slots out of range (one host
            synchronisation per call); False once a pipeline is trusted, e.g. on a GPU.

    Example:
        >>> buf = AgentBuffers(n_agents=8, capacity=1000)
        >>> slots = buf.add({"obs": torch.rand(4, 8, 147), "action": torch.zeros(4, 8, dtype=torch.long)})
        >>> items = buf.gather(torch.tensor([0, 7]), torch.tensor([3, 1]))  # agent 0 slot 3, agent 7 slot 1
        >>> items["obs"].shape
        torch.Size([2, 147])
    """

    def __init__(
        self, n_agents: int, capacity: int, device: torch.device | str = "cpu", check_inputs: bool = True
    ) -> None:
        check_int("n_agents", n_agents, 1)
        check_int("capacity", capacity, 1)
        check_bool("check_inputs", check_inputs)
        self.n_agents = n_agents
        self.capacity = capacity
        self.device = check_device("device", device)
        self.check_inputs = check_inputs
        self._storage: dict[str, torch.Tensor] = {}
        self._size = 0
        self._cursor = 0

    def __len__(self) -> int:
        """Transitions stored per agent."""
        return self._size

    @property
    def fields(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """Field name -> (per-item shape, dtype), empty before the first ``add``."""
        return {k: (tuple(v.shape[2:]), v.dtype) for k, v in self._storage.items()}

    def storage(self, field: str) -> torch.Tensor:
        """``[M, len, ...]`` the stored items of ``field`` in slot order (a view)."""
        if field not in self._storage:
            raise KeyError(f"no field {field!r}; stored fields are {sorted(self._storage)}")
        return self._storage[field][:, : self._size]

    def add(self, transitions: Mapping[str, torch.Tensor | Sequence[torch.Tensor]]) -> torch.Tensor:
        """Append ``n`` transitions of every agent; returns their slots ``[n]``.

        Args:
            transitions: field -> ``[n, M, ...]`` tensor (agent dim second, as in BenchMARL
                and EPyMARL batches), or a list of M per-agent ``[n, ...]`` tensors, which
                must all have the same shape and dtype (homogeneous agents).

        Everything is checked before anything is written.
        """
        batch = self._check(transitions)
        n = next(iter(batch.values())).shape[0]
        slots = (self._cursor + torch.arange(n, device=self.device)) % self.capacity
        if not self._storage:
            for name, value in batch.items():
                self._storage[name] = torch.zeros(
                    (self.n_agents, self.capacity, *value.shape[2:]), dtype=value.dtype, device=self.device
                )
        for name, value in batch.items():
            self._storage[name][:, slots] = value.transpose(0, 1)
        self._cursor = (self._cursor + n) % self.capacity
        self._size = min(self.capacity, self._size + n)
        return slots

    def gather(self, sources: torch.Tensor, slots: torch.Tensor) -> dict[str, torch.Tensor]:
        """The transitions of agents ``sources`` at ``slots`` (same shape ``S``): ``[*S, ...]``."""
        check_tensor("sources", sources, dtype="integer")
        check_tensor("slots", slots, dtype="integer")
        if sources.shape != slots.shape:
            raise ValueError(
                f"slots must have the shape of sources {tuple(sources.shape)}, got slots of shape {tuple(slots.shape)}"
            )
        if self._size == 0:
            raise ValueError("the agent buffers are empty: add transitions first")
        if self.check_inputs:
            check_values(
                [("sources", sources, "below", self.n_agents), ("slots", slots, "below", self._size)]
            )
        sources = sources.to(self.device, torch.long)
        slots = slots.to(self.device, torch.long)
        return {name: value[sources, slots] for name, value in self._storage.items()}

    def clear(self) -> None:
        self._storage = {}
        self._size = 0
        self._cursor = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "n_agents": self.n_agents,
            "capacity": self.capacity,
            "storage": {k: v.clone() for k, v in self._storage.items()},
            "size": self._size,
            "cursor": self._cursor,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`, validated whole first (on error nothing changes)."""
        where = "agent buffers"
        require_keys(where, state, ("n_agents", "capacity", "storage", "size", "cursor"))
        state_equal(where, state, "n_agents", self.n_agents, "buffers")
        state_equal(where, state, "capacity", self.capacity, "buffers")
        storage = state["storage"]
        if not isinstance(storage, Mapping):
            raise TypeError(
                f"{where} state['storage'] must be a mapping field -> tensor, got {type(storage).__name__}"
            )
        for name, value in storage.items():
            field = f"{where} state['storage'][{name!r}]"
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{field} must be a tensor, got {field}={type(value).__name__}")
            if value.dim() < 2 or tuple(value.shape[:2]) != (self.n_agents, self.capacity):
                raise ValueError(
                    f"{field} must have shape [n_agents={self.n_agents}, capacity={self.capacity}, ...], "
                    f"got {field} of shape {tuple(value.shape)}"
                )
        size = state_int(where, state, "size", 0, self.capacity if storage else 0)  # no fields: empty
        cursor = state_int(where, state, "cursor", 0, self.capacity - 1)
        self._storage = {k: v.to(self.device).clone() for k, v in storage.items()}
        self._size = size
        self._cursor = cursor

    # ------------------------------------------------------------------ checks
    def _check(self, transitions: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        if not isinstance(transitions, Mapping):
            raise TypeError(
                f"transitions must be a mapping of field -> tensor, got transitions={short_repr(transitions)}"
            )
        if not transitions:
            raise ValueError(f"transitions must hold at least one field, got transitions={transitions!r}")
        batch: dict[str, torch.Tensor] = {}
        for name, value in transitions.items():
            if isinstance(value, (list, tuple)):
                if len(value) != self.n_agents:
                    raise ValueError(
                        f"{name}: got a list of {len(value)} per-agent tensors for {self.n_agents} agents"
                    )
                for k, v in enumerate(value):
                    check_tensor(f"{name}[{k}]", v)
                check_homogeneous_agents(name, [(tuple(v.shape), v.dtype) for v in value])
                value = torch.stack(list(value), dim=1)
            check_tensor(name, value)
            if value.dim() < 2 or value.shape[1] != self.n_agents:
                raise ValueError(
                    f"{name} must be [n, M={self.n_agents}, ...] (agent dim second), got shape {tuple(value.shape)}"
                )
            batch[name] = value.to(self.device)
        counts = {name: v.shape[0] for name, v in batch.items()}
        if len(set(counts.values())) != 1:
            raise ValueError(f"fields disagree on the number of transitions n (dim 0): {counts}")
        n = next(iter(counts.values()))
        if n == 0:
            raise ValueError("transitions must hold at least one transition (n >= 1), got n=0")
        if n > self.capacity:
            raise ValueError(f"cannot add n={n} transitions to buffers of capacity={self.capacity} at once")
        if self._storage:
            if set(batch) != set(self._storage):
                raise ValueError(
                    f"fields {sorted(batch)} differ from the stored fields {sorted(self._storage)}"
                )
            for name, value in batch.items():
                want = self._storage[name]
                if value.shape[2:] != want.shape[2:] or value.dtype != want.dtype:
                    raise ValueError(
                        f"{name}: items of shape {tuple(value.shape[2:])} and dtype {value.dtype} do not match "
                        f"the stored {tuple(want.shape[2:])} and {want.dtype}"
                    )
        return batch
