"""Versioned state dicts, and the checks every ``load_state_dict`` runs before it assigns.

A saved state is read only by code that knows its format. Formats so far:

* 0: what hetplug wrote before states were versioned (no ``format_version`` key); it is
  read as format 1, whose content is the same.
* 1: the current format.

Loading is atomic: a ``load_state_dict`` validates the whole state with the helpers below
(keys, types, shapes, ranges, values), and only then assigns; on any error the object is
exactly as before. ``state_dict()`` returns a snapshot: tensors are copies, so training on
after saving changes nothing saved.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from hetplug._checks import check_tensor, check_values, is_int

FORMAT_KEY = "format_version"
FORMAT_VERSION = 1


def versioned(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with the current ``format_version`` (the first key)."""
    return {FORMAT_KEY: FORMAT_VERSION, **state}


def read_versioned(state: Any, name: str) -> dict[str, Any]:
    """The content of a saved ``state`` of ``name`` (a plugin or component), migrated to
    the current format; raises ``ValueError`` for a format this hetplug cannot read."""
    if not isinstance(state, Mapping):
        raise TypeError(
            f"{name} state must be a mapping (a state_dict()), got {name} state={type(state).__name__}"
        )
    found = state.get(FORMAT_KEY, 0)
    if found not in (0, FORMAT_VERSION) or isinstance(found, bool):
        raise ValueError(
            f"{name} state has format_version={found!r}; this hetplug reads format_version "
            f"{FORMAT_VERSION} (and unversioned states, format 0): it was saved by another hetplug "
            "version, load it with that version"
        )
    return {k: v for k, v in state.items() if k != FORMAT_KEY}


def snapshot(state: Any) -> Any:
    """A deep copy of a state (tensors cloned): nothing in it is shared with the live object."""
    return copy.deepcopy(state)


# ---------------------------------------------------------------------- load checks
def _field(where: str, key: str) -> str:
    return f"{where} state[{key!r}]"


def require_keys(where: str, state: Any, keys: Sequence[str]) -> Mapping:
    """``state`` as a mapping holding every key of ``keys``, or an error naming the first
    missing one (a truncated state, or one of another component)."""
    if not isinstance(state, Mapping):
        raise TypeError(
            f"{where} state must be a mapping (a state_dict()), got {where} state={type(state).__name__}"
        )
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(
            f"{where} state is missing {missing[0]!r} (a state_dict() of it holds {', '.join(map(repr, keys))}): "
            "it is truncated or was saved by another component"
        )
    return state


def state_int(where: str, state: Mapping, key: str, low: int | None = None, high: int | None = None) -> int:
    """``state[key]`` as an int in ``[low, high]``."""
    value = state[key]
    name = _field(where, key)
    if not is_int(value):
        raise TypeError(f"{name} must be an integer, got {name}={value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {name}={value!r}")
    return int(value)


def counter(value: int | torch.Tensor) -> int | torch.Tensor:
    """A counter for a state dict, as it is held: a 0-d device tensor (counted without a host
    synchronisation) is copied and stays a tensor, so a restored run computes with the same
    types and continues bit for bit."""
    return value.detach().clone() if isinstance(value, torch.Tensor) else int(value)


def state_counter(where: str, state: Mapping, key: str, device: torch.device | str) -> int | torch.Tensor:
    """``state[key]``, a count >= 0 saved by :func:`counter`: an int, or a 0-d integer
    tensor (returned as a copy on ``device``)."""
    value = state[key]
    if not isinstance(value, torch.Tensor):
        return state_int(where, state, key, 0)
    name = _field(where, key)
    check_tensor(name, value, 0, "integer")
    if int(value) < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {name}={int(value)}")
    return value.to(device).clone()


def state_equal(where: str, state: Mapping, key: str, expected: Any, what: str) -> None:
    """``state[key] == expected`` (a size the state must share with the live object)."""
    value = state[key]
    if value != expected or type(value) is bool:
        name = _field(where, key)
        raise ValueError(f"{name} must equal this {what}'s {key}={expected!r}, got {name}={value!r}")


def state_tensor(
    where: str,
    state: Mapping,
    key: str,
    shape: Sequence[int | None] | None = None,
    kind: str = "floating",
    check: str | None = None,
) -> torch.Tensor:
    """``state[key]`` as a tensor of ``shape`` (None entries: any size) and dtype ``kind``
    (``"floating"``, ``"bool"``, ``"integer"``), whose values pass ``check`` (``"finite"``,
    ``"finite_nonnegative"``), or an error naming the key and what was expected."""
    value = state[key]
    name = _field(where, key)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {name}={type(value).__name__}")
    if shape is not None and (
        value.dim() != len(shape)
        or any(s is not None and s != v for s, v in zip(shape, value.shape, strict=True))
    ):
        want = [s if s is not None else "*" for s in shape]
        raise ValueError(f"{name} must have shape {want}, got {name} of shape {list(value.shape)}")
    ok = {
        "floating": value.is_floating_point(),
        "bool": value.dtype == torch.bool,
        "integer": not value.is_floating_point() and not value.is_complex() and value.dtype != torch.bool,
    }[kind]
    if not ok:
        raise TypeError(f"{name} must be a {kind} tensor, got {name} of dtype {value.dtype}")
    if check is not None:
        check_values([(name, value, check, None)])
    return value


def check_module_state(where: str, module: torch.nn.Module, state: Any) -> None:
    """Raise unless ``state`` loads into ``module`` strictly: the same keys, each tensor of
    the same shape (a model of other dimensions is refused before anything is copied)."""
    if not isinstance(state, Mapping):
        raise TypeError(
            f"{where} must be a module state_dict() (a mapping), got {where}={type(state).__name__}"
        )
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise ValueError(
            f"{where} does not fit this {type(module).__name__}: "
            + (f"missing {missing[:3]}" if missing else "")
            + (" and " if missing and extra else "")
            + (f"unexpected {extra[:3]}" if extra else "")
        )
    for key, want in own.items():
        got = state[key]
        if not isinstance(got, torch.Tensor):
            raise TypeError(f"{where}[{key!r}] must be a tensor, got {where}[{key!r}]={type(got).__name__}")
        if tuple(got.shape) != tuple(want.shape):
            raise ValueError(
                f"{where}[{key!r}] must have shape {list(want.shape)} (a model of other dimensions?), "
                f"got {where}[{key!r}] of shape {list(got.shape)}"
            )


def check_optimizer_state(where: str, optimizer: torch.optim.Optimizer, state: Any) -> None:
    """Raise unless ``state`` is an optimiser state for ``optimizer``'s parameters: the same
    groups and parameter counts, each per-parameter tensor shaped like its parameter."""
    if not isinstance(state, Mapping) or "state" not in state or "param_groups" not in state:
        raise TypeError(
            f"{where} must be an optimizer state_dict() (with 'state' and 'param_groups'), "
            f"got {where}={type(state).__name__}"
        )
    groups = state["param_groups"]
    own = optimizer.param_groups
    sizes = [len(g.get("params", ())) for g in groups] if isinstance(groups, Sequence) else None
    if sizes != [len(g["params"]) for g in own]:
        raise ValueError(
            f"{where} has parameter groups of sizes {sizes}, this optimizer's are "
            f"{[len(g['params']) for g in own]} (a model of other dimensions?)"
        )
    params = [p for g in own for p in g["params"]]
    ids = [i for g in groups for i in g["params"]]
    by_id = dict(zip(ids, params, strict=True))
    if not isinstance(state["state"], Mapping):
        raise TypeError(f"{where}['state'] must be a mapping, got {type(state['state']).__name__}")
    for pid, entry in state["state"].items():
        if pid not in by_id or not isinstance(entry, Mapping):
            raise ValueError(f"{where}['state'] has an entry for parameter {pid!r}, which no group holds")
        p = by_id[pid]
        for k, v in entry.items():
            if isinstance(v, torch.Tensor) and v.dim() and tuple(v.shape) != tuple(p.shape):
                raise ValueError(
                    f"{where}['state'][{pid!r}][{k!r}] must have the shape of its parameter "
                    f"{list(p.shape)}, got shape {list(v.shape)}"
                )
