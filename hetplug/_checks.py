"""Argument checks shared by the components, hooks and state loaders.

One error style everywhere: ``"<field> must be <expectation>, got <field>=<value!r>"``.
A value of the wrong type raises ``TypeError``, a value of the right type outside its
domain ``ValueError``. Every check is meant to run *before* a component changes any of its
state.

Checks of Python values and of tensors' types, dtypes and shapes are free. Checks of
tensor *values* (NaN, ranges) read a result back to the host, a synchronisation on a GPU:
:func:`tensor_problems` builds one flag for several of them, so a caller pays for a single
synchronisation (:func:`raise_problems`), and only where its ``check_inputs`` allows.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import fields, is_dataclass
from typing import Any, TypeVar

import numpy as np
import torch

T = TypeVar("T")

#: dtype kinds accepted by :func:`check_tensor`'s ``dtype`` argument
_KINDS = {
    "bool": lambda d: d == torch.bool,
    "integer": lambda d: not d.is_floating_point and not d.is_complex and d != torch.bool,
    "floating": lambda d: d.is_floating_point,
    "real": lambda d: not d.is_complex and d != torch.bool,
    "bool_or_real": lambda d: not d.is_complex,
}
_KIND_WORDS = {
    "bool": "a bool tensor",
    "integer": "an integer tensor",
    "floating": "a floating-point tensor",
    "real": "a real (integer or floating) tensor",
    "bool_or_real": "a bool or real tensor",
}


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def is_int(value: Any) -> bool:
    """An integer that is not a bool (numpy integers count)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_range(
    name: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """``TypeError`` unless ``value`` is a number (not a bool or a string); ``ValueError``
    unless it is finite and ``low (<|<=) value (<|<=) high``."""
    if not _is_number(value):
        raise TypeError(f"{name} must be a number, got {name}={value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {name}={value!r}")
    if low is not None and (value <= low if low_open else value < low):
        op = ">" if low_open else ">="
        raise ValueError(f"{name} must be {op} {low}, got {name}={value!r}")
    if high is not None and (value >= high if high_open else value > high):
        op = "<" if high_open else "<="
        raise ValueError(f"{name} must be {op} {high}, got {name}={value!r}")


def check_int(name: str, value: int, low: int | None = None, high: int | None = None) -> None:
    """``TypeError`` unless ``value`` is an integer (a bool, a float such as ``3.0`` and a
    string such as ``'4'`` are not); ``ValueError`` unless ``low <= value <= high``."""
    if not is_int(value):
        raise TypeError(f"{name} must be an integer, got {name}={value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {name}={value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be an integer <= {high}, got {name}={value!r}")


def check_bool(name: str, value: Any) -> None:
    """``TypeError`` unless ``value`` is True or False (``'false'``, ``'yes'`` and 0/1 are not)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool (true or false), got {name}={value!r}")


def check_choice(name: str, value: Any, choices: tuple) -> None:
    """``ValueError`` unless ``value`` is one of ``choices``; ``TypeError`` when the choices
    are names and ``value`` is not a string."""
    if all(isinstance(c, str) for c in choices) and not isinstance(value, str):
        raise TypeError(f"{name} must be one of {list(choices)}, got {name}={value!r}")
    if value not in choices:
        from hetplug.config import did_you_mean

        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        raise ValueError(f"{name} must be one of {list(choices)}, got {name}={value!r}{hint}")


def _check_sequence(name: str, value: Any, length: int | None, what: str, entry: Any) -> None:
    """A non-empty list or tuple (of ``length`` entries) whose entries pass ``entry``;
    ``TypeError`` for a string, a scalar or a wrong entry type, ``ValueError`` for a length."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list of {what}, got {name}={value!r}")
    if not value or (length is not None and len(value) != length):
        want = f"{length} {what}" if length is not None else f"a non-empty list of {what}"
        raise ValueError(f"{name} must be {want}, got {name}={value!r}")
    if not all(entry(v) for v in value):
        raise TypeError(f"{name} must be a list of {what}, got {name}={value!r}")


def check_int_sequence(
    name: str, value: Any, low: int | None = None, length: int | None = None
) -> tuple[int, ...]:
    """A non-empty list or tuple of integers >= ``low`` (of ``length`` entries) as a tuple.

    A string (``'8x8'``) or a scalar raises ``TypeError``; a wrong length or entry ``ValueError``.
    """
    _check_sequence(name, value, length, "integers", is_int)
    if low is not None and any(v < low for v in value):
        raise ValueError(f"{name} must hold integers >= {low}, got {name}={value!r}")
    return tuple(int(v) for v in value)


def check_number_sequence(name: str, value: Any, length: int | None = None) -> tuple[float, ...]:
    """A non-empty list or tuple of finite numbers (of ``length`` entries) as a tuple."""
    _check_sequence(name, value, length, "numbers", _is_number)
    if not all(math.isfinite(v) for v in value):
        raise ValueError(f"{name} must hold finite numbers, got {name}={value!r}")
    return tuple(float(v) for v in value)


def check_device(name: str, value: Any) -> torch.device:
    """``value`` as a ``torch.device``: ``TypeError`` unless a string or a device,
    ``ValueError`` for a string that names no device or a device this machine lacks."""
    if not isinstance(value, (str, torch.device)):
        raise TypeError(f"{name} must be a torch.device or a device string like 'cpu', got {name}={value!r}")
    try:
        device = torch.device(value)
    except RuntimeError:
        raise ValueError(
            f"{name} must be a device string like 'cpu' or 'cuda:0', got {name}={value!r}"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"{name} must be an available device (this machine has no CUDA), got {name}={value!r}"
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(
            f"{name} must be an available device ({torch.cuda.device_count()} CUDA device(s) here), "
            f"got {name}={value!r}"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name} must be an available device (MPS is not available), got {name}={value!r}")
    return device


def check_generator(name: str, value: Any) -> None:
    """``TypeError`` unless ``value`` is None or a ``torch.Generator``."""
    if value is not None and not isinstance(value, torch.Generator):
        raise TypeError(f"{name} must be None or a torch.Generator, got {name}={value!r}")


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut at ``limit`` characters, with its type when that is not obvious."""
    text = repr(value)
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return (
        text if isinstance(value, (str, int, float, bool, type(None))) else f"{text} ({type(value).__name__})"
    )


def _shape_of(value: Any) -> str:
    return (
        f"{type(value).__name__} of shape {tuple(value.shape)}"
        if hasattr(value, "shape")
        else short_repr(value)
    )


def check_tensor(
    name: str,
    value: Any,
    ndim: int | tuple[int, ...] | None = None,
    dtype: str | None = None,
) -> torch.Tensor:
    """Check that ``value`` is a tensor (``TypeError``), of ``ndim`` dimensions
    (``ValueError``) and of the dtype kind ``dtype`` (``TypeError``): ``"bool"``,
    ``"integer"``, ``"floating"``, ``"real"`` or ``"bool_or_real"``. Returns it. Free: no
    host synchronisation."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {name}={_shape_of(value)}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if value.dim() not in allowed:
            raise ValueError(
                f"{name} must have {' or '.join(map(str, allowed))} dimensions, "
                f"got {name} of shape {tuple(value.shape)}"
            )
    if dtype is not None and not _KINDS[dtype](value.dtype):
        raise TypeError(f"{name} must be {_KIND_WORDS[dtype]}, got {name} of dtype {value.dtype}")
    return value


def check_mask(name: str, value: Any, shape: tuple[int, ...]) -> torch.Tensor:
    """A bool tensor of ``shape``: a float or integer mask raises ``TypeError`` (convert it
    with ``.bool()``), another shape ``ValueError``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a bool tensor of shape {list(shape)}, got {name}={_shape_of(value)}")
    if value.dtype != torch.bool:
        raise TypeError(
            f"{name} must be a bool tensor (convert it with .bool()), got {name} of dtype {value.dtype}"
        )
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {list(shape)}, got {name} of shape {tuple(value.shape)}")
    return value


def check_mapping(name: str, value: Any, expected: str = "a mapping") -> Mapping:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be {expected}, got {name}={short_repr(value)}")
    return value


# ---------------------------------------------------------------------- tensor values
def tensor_problems(checks: Sequence[tuple[str, torch.Tensor | None, str, Any]]) -> torch.Tensor | None:
    """One bool flag (a 0-d device tensor, no synchronisation) that is True when every check
    passes, or None when there is nothing to check. Pass it to :func:`raise_problems`.

    Each check is ``(name, tensor, kind, arg)`` with kind ``"finite"``,
    ``"finite_nonnegative"``, ``"nonnegative"`` (inf allowed, NaN not), ``"below"``
    (integers in ``[0, arg)``) or ``"distribution"`` (entries finite and >= 0, each row of
    the last dim summing to 1 within ``arg``, or all zero); None tensors and empty ones are
    skipped.
    """
    flags = [_ok(t, kind, arg) for _, t, kind, arg in checks if t is not None and t.numel()]
    if not flags:
        return None
    return torch.stack([f.to(flags[0].device) for f in flags]).all()


def _bad(t: torch.Tensor, kind: str, arg: Any) -> tuple[torch.Tensor, str]:
    """``(mask of bad entries, expectation)``; for ``"distribution"`` the mask is per row."""
    if kind == "finite":
        return ~torch.isfinite(t), "finite (no NaN or inf)"
    if kind == "finite_nonnegative":
        bad = t < 0
        return (bad | ~torch.isfinite(t) if t.is_floating_point() else bad), "finite and >= 0"
    if kind == "nonnegative":
        return ~(t >= 0), ">= 0 (not NaN)"
    if kind == "below":
        return (t < 0) | (t >= arg), f"in [0, {arg})"
    if kind == "distribution":
        total = t.sum(-1)
        bad = ~(((total - 1).abs() <= arg) | (total == 0)) | ~(torch.isfinite(t) & (t >= 0)).all(-1)
        return (
            bad,
            f"a distribution over its last dim (entries finite and >= 0 summing to 1, or all 0; row sums within {arg})",
        )
    raise AssertionError(kind)


def _ok(t: torch.Tensor, kind: str, arg: Any) -> torch.Tensor:
    if t.dtype == torch.bool and kind in ("finite", "finite_nonnegative", "nonnegative"):
        return torch.ones((), dtype=torch.bool, device=t.device)
    if kind == "distribution":
        return ~_bad(t, kind, arg)[0].any()
    if kind == "finite":
        return (
            torch.isfinite(t).all()
            if t.is_floating_point()
            else torch.ones((), dtype=torch.bool, device=t.device)
        )
    if kind == "finite_nonnegative":
        good = t >= 0
        if t.is_floating_point():
            good = good & torch.isfinite(t)
        return good.all()
    if kind == "nonnegative":
        return (t >= 0).all()
    if kind == "below":
        return ((t >= 0) & (t < arg)).all()
    raise AssertionError(kind)


def raise_problems(
    flag: torch.Tensor | None, checks: Sequence[tuple[str, torch.Tensor | None, str, Any]]
) -> None:
    """Raise the error of the first failing check, if ``flag`` (from :func:`tensor_problems`)
    says one failed: one host synchronisation, more only when raising."""
    if flag is None or bool(flag):
        return
    for name, t, kind, arg in checks:
        if t is None or not t.numel() or bool(_ok(t, kind, arg)):
            continue
        bad, expect = _bad(t, kind, arg)
        first = tuple(int(i) for i in bad.nonzero()[0].tolist())
        count = int(bad.sum())
        where = f"[{', '.join(map(str, first))}]" if first else ""
        if kind == "distribution":
            raise ValueError(
                f"{name} must be {expect}, got {name}{where}.sum()={t[first].sum().item()!r} "
                f"with min {t[first].min().item()!r} ({count} bad row(s))"
            )
        raise ValueError(
            f"{name} must be {expect}, got {name}{where}={t[first].item()!r} "
            f"({count} bad value(s) of {t.numel()})"
        )
    raise AssertionError("raise_problems: a check failed but none was found again")


def check_values(checks: Sequence[tuple[str, torch.Tensor | None, str, Any]]) -> None:
    """:func:`tensor_problems` and :func:`raise_problems` at once: one synchronisation."""
    raise_problems(tensor_problems(checks), checks)


def check_finite_nonnegative(name: str, value: torch.Tensor) -> None:
    """One fused check (a single host synchronisation) for NaN, inf and negative entries."""
    check_values([(name, value, "finite_nonnegative", None)])


# ---------------------------------------------------------------------- configs
def config_from_dict(cls: type[T], values: Mapping[str, Any] | T | None, where: str) -> T:
    """Build a config dataclass from a mapping, naming unknown keys.

    ``where`` prefixes the error, e.g. ``"shep"`` gives ``unknown option shep.foo``; a
    field's ``TypeError`` stays a ``TypeError`` and its ``ValueError`` a ``ValueError``.
    """
    if values is None:
        return cls()
    if isinstance(values, cls):
        return values
    if not isinstance(values, Mapping):
        raise TypeError(f"{where} must be a mapping of options or a {cls.__name__}, got {where}={values!r}")
    assert is_dataclass(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known, key=str)
    if unknown:
        from hetplug.config import did_you_mean

        raise ValueError(
            f"unknown option {where}.{unknown[0]}{did_you_mean(unknown[0], sorted(known))}; "
            f"{cls.__name__} accepts: {', '.join(sorted(known))}"
        )
    try:
        return cls(**values)
    except (ValueError, TypeError) as err:
        raise type(err)(f"{where}: {err}") from None
