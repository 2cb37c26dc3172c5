"""Deep snapshots of objects, for "nothing changed" and "bit-identical" assertions.

``deep_state(obj)`` walks an object (a plugin, a plugin manager, a component, a module)
and copies every tensor, array, generator state and plain value it holds; ``assert_same``
compares two snapshots bit for bit (NaN equals NaN, -0.0 differs from 0.0). Caches that
are not state (SHEP's last descriptors, a grid's binning constants) are left out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pluggy
import torch

#: attributes that are caches, scratch buffers or reports, not state (HetDPS's
#: ``last_distance`` and its manager's ``last_plan`` report the latest regrouping; a loaded
#: plugin has none; the sampler's ``_last``/``_positions`` are its update's scratch and
#: ``_beta_cache`` memoises the IS exponent; SHEP's ``_checked`` remembers which batch it checked)
SKIP = {"_last_descriptors", "_cache", "_sources", "_zero", "_rows", "last_plan", "last_distance",
        "_last", "_positions", "_beta_cache", "_checked"}  # fmt: skip


def deep_state(obj: Any, _seen: dict[int, Any] | None = None) -> Any:
    """A copy of everything ``obj`` holds that a method could change."""
    # id -> object: holding the object keeps a temporary (a state_dict() result) alive, so
    # its id cannot be reused by a later temporary and mistaken for "seen"
    seen: dict[int, Any] = {} if _seen is None else _seen
    if isinstance(obj, torch.Tensor):
        return ("tensor", obj.dtype, tuple(obj.shape), obj.detach().to("cpu", copy=True))
    if isinstance(obj, np.ndarray):
        return ("array", obj.dtype.str, obj.shape, obj.copy())
    if obj is None or isinstance(
        obj, (str, bytes, bool, int, float, complex, torch.dtype, torch.device, type)
    ):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, torch.Generator):
        return ("generator", deep_state(obj.get_state()))
    if isinstance(obj, np.random.Generator):
        return ("numpy generator", deep_state(obj.bit_generator.state, seen))
    if dataclasses.is_dataclass(obj) and obj.__dataclass_params__.frozen or is_config(obj):
        return _dataclass(obj, seen)  # a value: compared by value, wherever it is shared
    if id(obj) in seen:
        return ("seen", type(obj).__name__)
    seen[id(obj)] = obj
    if isinstance(obj, pluggy.PluginManager):
        return {name: deep_state(p, seen) for name, p in obj.list_name_plugin() if p is not None}
    if isinstance(obj, torch.optim.Optimizer):
        return ("optimizer", deep_state(obj.state_dict(), seen))
    if isinstance(obj, torch.nn.Module):
        return ("module", obj.training, deep_state(obj.state_dict(keep_vars=False), seen))
    if isinstance(obj, Mapping):
        return ("mapping", [(repr(k), deep_state(v, seen)) for k, v in obj.items()])
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        return (type(obj).__name__, [deep_state(v, seen) for v in items])
    if dataclasses.is_dataclass(obj):
        return _dataclass(obj, seen)
    if hasattr(obj, "__dict__") and not callable(obj):
        return (type(obj).__name__, {k: deep_state(v, seen) for k, v in vars(obj).items() if k not in SKIP})
    if callable(obj):
        return ("callable", id(obj))
    return ("object", type(obj).__name__, repr(obj))


def is_config(obj: Any) -> bool:
    """A component's options (``SHEPConfig``, ``LBSConfig``...): values, not state."""
    return (
        dataclasses.is_dataclass(obj) and not isinstance(obj, type) and type(obj).__name__.endswith("Config")
    )


def _dataclass(obj: Any, seen: dict[int, Any]) -> Any:
    fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    return (type(obj).__name__, {k: deep_state(v, seen) for k, v in fields.items() if k not in SKIP})


def _bits(t: torch.Tensor) -> torch.Tensor:
    t = t.reshape(-1).contiguous()
    return t if t.dtype == torch.bool else t.view(torch.uint8)


def assert_same(a: Any, b: Any, path: str = "state") -> None:
    """``a`` and ``b`` (from :func:`deep_state`) are equal bit for bit; the message names
    the first place where they differ."""
    if isinstance(a, tuple) and a and a[0] == "tensor":
        assert isinstance(b, tuple) and b and b[0] == "tensor", f"{path}: a tensor became {b!r:.80}"
        assert a[1:3] == b[1:3], f"{path}: dtype/shape {a[1:3]} became {b[1:3]}"
        assert torch.equal(_bits(a[3]), _bits(b[3])), f"{path}: tensor values changed"
        return
    if isinstance(a, tuple) and a and a[0] == "array":
        assert isinstance(b, tuple) and b[:3] == a[:3], f"{path}: array dtype/shape changed"
        assert np.array_equal(a[3], b[3], equal_nan=a[3].dtype.kind == "f"), f"{path}: array values changed"
        return
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: keys {sorted(a)} became {sorted(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
        return
    if isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{path}: {a!r:.120} became {b!r:.120}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
        return
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return  # NaN
    assert a == b and type(a) is type(b), f"{path}: {a!r:.120} became {b!r:.120}"


def tensors_of(obj: Any, seen: set[int] | None = None) -> list[torch.Tensor]:
    """Every tensor ``obj`` holds (plugins, components, optimisers' state, modules)."""
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        return [obj]
    if (
        id(obj) in seen
        or obj is None
        or isinstance(obj, (str, bytes, int, float, bool, torch.dtype, torch.device))
    ):
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.optim.Optimizer):
        return [t for s in obj.state.values() for t in tensors_of(s, seen)]
    if isinstance(obj, torch.nn.Module):
        return list(obj.state_dict(keep_vars=True).values())
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in tensors_of(v, seen)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in tensors_of(v, seen)]
    if hasattr(obj, "list_name_plugin"):
        return [t for _, p in obj.list_name_plugin() for t in tensors_of(p, seen)]
    if hasattr(obj, "__dict__") and not callable(obj):
        return [t for v in vars(obj).values() for t in tensors_of(v, seen)]
    return []


def shared_tensors(live: Any, saved: Any) -> set[int]:
    """The storages that a saved state shares with the live objects (empty for a snapshot)."""
    mine = {t.untyped_storage().data_ptr() for t in tensors_of(live) if t.numel()}
    return mine & {t.untyped_storage().data_ptr() for t in tensors_of(saved) if t.numel()}
