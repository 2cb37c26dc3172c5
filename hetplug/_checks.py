"""Argument checks shared by the components.

Every check raises ``ValueError`` naming the field and the offending value, and is
meant to run *before* a component changes any of its state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def check_range(
    name: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raise ``ValueError`` unless ``low (<|<=) value (<|<=) high`` and ``value`` is finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {name}={value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {name}={value}")
    if low is not None and (value <= low if low_open else value < low):
        op = ">" if low_open else ">="
        raise ValueError(f"{name} must be {op} {low}, got {name}={value}")
    if high is not None and (value >= high if high_open else value > high):
        op = "<" if high_open else "<="
        raise ValueError(f"{name} must be {op} {high}, got {name}={value}")


def check_int(name: str, value: int, low: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {name}={value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {name}={value}")


def check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {name}={value!r}")


def check_tensor(name: str, value: Any, ndim: int | tuple[int, ...] | None = None) -> torch.Tensor:
    """Check that ``value`` is a tensor (of ``ndim`` dimensions) and return it."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if value.dim() not in allowed:
            raise ValueError(
                f"{name} must have {' or '.join(map(str, allowed))} dimensions, "
                f"got shape {tuple(value.shape)}"
            )
    return value


def check_finite_nonnegative(name: str, value: torch.Tensor) -> None:
    """One fused check (a single host synchronisation) for NaN, inf and negative entries."""
    if value.numel() == 0:
        return
    ok = torch.isfinite(value).all() & (value >= 0).all()
    if not bool(ok):
        bad = value[~(torch.isfinite(value) & (value >= 0))]
        raise ValueError(
            f"{name} must be finite and >= 0, got {bad.numel()} bad value(s), e.g. {name}={bad[0].item()}"
        )


def config_from_dict(cls: type[T], values: Mapping[str, Any] | T | None, where: str) -> T:
    """Build a config dataclass from a mapping, naming unknown keys.

    ``where`` prefixes the error, e.g. ``"shep"`` gives ``unknown option shep.foo``.
    """
    if values is None:
        return cls()
    if isinstance(values, cls):
        return values
    if not isinstance(values, Mapping):
        raise ValueError(
            f"options for {where} must be a mapping or {cls.__name__}, got {type(values).__name__}"
        )
    assert is_dataclass(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        from hetplug.config import did_you_mean

        raise ValueError(
            f"unknown option {where}.{unknown[0]}{did_you_mean(unknown[0], sorted(known))}; "
            f"{cls.__name__} accepts: {', '.join(sorted(known))}"
        )
    try:
        return cls(**values)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{where}: {err}") from None
