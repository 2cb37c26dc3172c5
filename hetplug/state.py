"""Versioned state dicts: every plugin's ``state_dict()`` carries a format version.

A saved state is read only by code that knows its format. Formats so far:

* 0: what hetplug wrote before states were versioned (no ``format_version`` key); it is
  read as format 1, whose content is the same.
* 1: the current format.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FORMAT_KEY = "format_version"
FORMAT_VERSION = 1


def versioned(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with the current ``format_version`` (the first key)."""
    return {FORMAT_KEY: FORMAT_VERSION, **state}


def read_versioned(state: Any, name: str) -> dict[str, Any]:
    """The content of a saved ``state`` of ``name`` (a plugin or component), migrated to
    the current format; raises ``ValueError`` for a format this hetplug cannot read."""
    if not isinstance(state, Mapping):
        raise ValueError(f"{name} state must be a mapping (a state_dict()), got {type(state).__name__}")
    found = state.get(FORMAT_KEY, 0)
    if found not in (0, FORMAT_VERSION):
        raise ValueError(
            f"{name} state has format_version={found!r}; this hetplug reads format_version "
            f"{FORMAT_VERSION} (and unversioned states, format 0): it was saved by another hetplug "
            "version, load it with that version"
        )
    return {k: v for k, v in state.items() if k != FORMAT_KEY}
