"""Sharing plans: which network (slot) each agent uses, and how slots are copied or merged.

:func:`match_groups` implements the dual clustering of HetDPS Appendix I. The previous
grouping is the set of agents sharing each slot; the new one comes from clustering. The
overlap matrix ``O[old, new]`` (agents in both) is matched by maximum total overlap with
the Hungarian algorithm (``scipy.optimize.linear_sum_assignment(O, maximize=True)``), then:

1. same count: each new group inherits the slot of the old group it is matched to;
2. more new groups (split): matched groups inherit; an unmatched new group gets a free
   slot, initialised by copying the network of the old group it overlaps most (ties: the
   old group closest in mean distance);
3. fewer new groups (merge): matched groups keep their slot; each unmatched old group is
   merged into the new group that received most of its agents. The networks of a new group
   are combined by ``merge_mode``: ``"majority"`` (the network that served most agents),
   ``"random"`` (one of them, uniformly), ``"average"`` (their mean) or ``"weighted"``
   (mean weighted by the agents each served).

A plan is a linear map on slots: slot ``d`` becomes ``sum_s W[d, s] * slot s`` (one-hot
rows copy, weighted rows merge, identity rows stay). The same map applies to parameters,
optimiser moments and target networks (:class:`~hetplug.sharing.ParameterSlots`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from hetplug._checks import check_choice, check_int, is_int

MERGE_MODES = ("majority", "random", "average", "weighted")
CASES = ("same", "split", "merge", "kept")
#: how far a merge's weights may sum from 1
WEIGHT_TOLERANCE = 1e-6


def _int_tuple(name: str, value: Any, low: int = 0, high: int | None = None) -> tuple[int, ...]:
    """``value`` as a tuple of ints in ``[low, high)`` (numpy arrays and tensors accepted)."""
    if isinstance(value, (np.ndarray, torch.Tensor)):
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
        raise TypeError(f"{name} must be a sequence of integers, got {name}={value!r}")
    for v in value:
        if not is_int(v):
            raise TypeError(f"{name} must be a sequence of integers, got {name}={value!r}")
        if v < low or (high is not None and v >= high):
            bound = f"[{low}, {high})" if high is not None else f">= {low}"
            raise ValueError(f"{name} must hold integers in {bound}, got {name}={value!r}")
    return tuple(int(v) for v in value)


@dataclass(frozen=True)
class SlotOp:
    """Slot ``dst`` becomes ``sum_k weights[k] * slot sources[k]`` (``kind`` "copy" or "merge")."""

    kind: str
    dst: int
    sources: tuple[int, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, ("copy", "merge"))
        check_int("dst", self.dst, 0)
        sources = _int_tuple("sources", self.sources)
        weights = self.weights
        if isinstance(weights, (np.ndarray, torch.Tensor)):
            weights = weights.tolist()
        if isinstance(weights, (str, bytes)) or not isinstance(weights, (tuple, list)):
            raise TypeError(f"weights must be a sequence of numbers, got weights={weights!r}")
        if not sources or len(weights) != len(sources):
            raise ValueError(
                f"weights must hold one number per source ({len(sources)} sources), got weights={weights!r}"
            )
        for w in weights:
            if isinstance(w, bool) or not isinstance(w, (int, float, np.number)):
                raise TypeError(f"weights must be a sequence of numbers, got weights={weights!r}")
            if not math.isfinite(w) or w < 0:
                raise ValueError(f"weights must be finite and >= 0, got weights={weights!r}")
        if abs(sum(weights) - 1.0) > WEIGHT_TOLERANCE:
            raise ValueError(f"weights must sum to 1, got weights={weights!r} (sum {sum(weights)!r})")
        if len(set(sources)) != len(sources):
            raise ValueError(f"sources must be distinct slots, got sources={sources!r}")
        if self.kind == "copy" and len(sources) != 1:
            raise ValueError(f"sources of a copy must be one slot, got sources={sources!r}")
        object.__setattr__(self, "dst", int(self.dst))
        object.__setattr__(self, "sources", sources)
        object.__setattr__(self, "weights", tuple(float(w) for w in weights))

    def __str__(self) -> str:
        if self.kind == "copy":
            return f"copy slot {self.sources[0]} -> slot {self.dst}"
        parts = " + ".join(f"{w:.3g}*slot {s}" for s, w in zip(self.sources, self.weights, strict=True))
        return f"merge slot {self.dst} = {parts}"


@dataclass(frozen=True)
class SharingPlan:
    """One regrouping decision, readable and loggable (``str(plan)``, ``plan.to_dict()``).

    Attributes:
        assignment: ``[N]`` slot (network) of each agent after the plan.
        previous: ``[N]`` slot of each agent before.
        labels: ``[N]`` the clustering the plan follows (0..groups-1).
        case: ``"same"``, ``"split"``, ``"merge"``, or ``"kept"`` when the manager kept
            the previous grouping (see ``reason``).
        operations: the copies and merges, in no particular order (they read the slots as
            they were before the plan).
        n_slots: how many slots the host preallocated.
        reason: why the grouping was kept, or "".
    """

    assignment: tuple[int, ...]
    previous: tuple[int, ...]
    labels: tuple[int, ...]
    case: str
    operations: tuple[SlotOp, ...]
    n_slots: int
    reason: str = ""
    metrics: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        check_int("n_slots", self.n_slots, 1)
        for name in ("assignment", "previous"):
            object.__setattr__(self, name, _int_tuple(name, getattr(self, name), 0, self.n_slots))
        object.__setattr__(self, "labels", _int_tuple("labels", self.labels))
        if isinstance(self.operations, (str, bytes)) or not isinstance(self.operations, (tuple, list)):
            raise TypeError(f"operations must be a sequence of SlotOp, got operations={self.operations!r}")
        object.__setattr__(self, "operations", tuple(self.operations))
        self.validate()

    def validate(self) -> None:
        """Raise unless the plan fits its own ``n_slots``: every slot named in range, one
        operation per destination, as many agents everywhere. Plans are checked when built
        and again before :class:`~hetplug.sharing.ParameterSlots` applies one."""
        n = len(self.assignment)
        if n == 0 or len(self.previous) != n or len(self.labels) != n:
            raise ValueError(
                f"assignment, previous and labels must each hold one entry per agent, got "
                f"assignment={self.assignment!r}, previous={self.previous!r}, labels={self.labels!r}"
            )
        for name in ("assignment", "previous"):
            for a in getattr(self, name):
                if not is_int(a) or not 0 <= a < self.n_slots:
                    raise ValueError(
                        f"{name} must hold slots in [0, n_slots={self.n_slots}), got {name}={getattr(self, name)!r}"
                    )
        check_choice("case", self.case, CASES)
        seen: set[int] = set()
        for op in self.operations:
            if not isinstance(op, SlotOp):
                raise TypeError(f"operations must hold SlotOp objects, got operation={op!r}")
            op.__post_init__()  # again: a plan may have been edited since it was built
            for slot in (op.dst, *op.sources):
                if not 0 <= slot < self.n_slots:
                    raise ValueError(
                        f"operation slots must lie in [0, n_slots={self.n_slots}), got slot={slot} in '{op}'"
                    )
            if op.dst in seen:
                raise ValueError(f"operations must write each slot once, got slot={op.dst} written twice")
            seen.add(op.dst)

    @property
    def n_groups(self) -> int:
        return len(set(self.assignment))

    @property
    def changed(self) -> bool:
        return self.assignment != self.previous or bool(self.operations)

    def routing(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """``[N]`` int64 agent -> slot, for indexing stacked parameters."""
        return torch.tensor(self.assignment, dtype=torch.int64, device=device)

    def mixing(self, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
        """``[n_slots, n_slots]`` matrix W: new slot d = sum_s W[d, s] * old slot s."""
        w = torch.eye(self.n_slots, dtype=dtype, device=device)
        for op in self.operations:
            w[op.dst] = 0
            for s, weight in zip(op.sources, op.weights, strict=True):
                w[op.dst, s] += weight
        return w

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "assignment": list(self.assignment),
            "previous": list(self.previous),
            "labels": list(self.labels),
            "operations": [str(op) for op in self.operations],
            "n_groups": self.n_groups,
            "reason": self.reason,
        }

    def __str__(self) -> str:
        ops = "; ".join(str(op) for op in self.operations) or "no copies or merges"
        head = f"{self.case}: {len(set(self.previous))} -> {self.n_groups} groups, agents -> slots {list(self.assignment)}"
        return f"{head} ({ops}){' [' + self.reason + ']' if self.reason else ''}"


def kept_plan(
    previous: np.ndarray, n_slots: int, reason: str, labels: np.ndarray | None = None
) -> SharingPlan:
    """The plan that changes nothing (used when clustering failed)."""
    prev = tuple(int(a) for a in previous)
    lab = tuple(int(v) for v in (labels if labels is not None else _groups_of(previous)))
    return SharingPlan(prev, prev, lab, "kept", (), n_slots, reason)


def _groups_of(assignment: np.ndarray) -> np.ndarray:
    _, inverse = np.unique(assignment, return_inverse=True)
    return inverse


def _closest(
    candidates: np.ndarray, members_of: list[np.ndarray], group: np.ndarray, distance: np.ndarray
) -> int:
    """Among ``candidates`` (indices into ``members_of``), the one nearest ``group`` in mean distance."""
    if len(candidates) == 1:
        return int(candidates[0])
    mean = [distance[np.ix_(group, members_of[c])].mean() for c in candidates]
    return int(candidates[int(np.argmin(mean))])


def match_groups(
    previous: np.ndarray,
    labels: np.ndarray,
    distance: np.ndarray,
    n_slots: int,
    merge_mode: str = "weighted",
    rng: np.random.Generator | None = None,
) -> SharingPlan:
    """The plan that moves agents from slots ``previous [N]`` to the groups ``labels [N]``.

    ``labels`` must be 0..G-1 and ``G <= n_slots`` (the manager checks both).
    """
    if merge_mode not in MERGE_MODES:
        raise ValueError(f"merge_mode must be one of {list(MERGE_MODES)}, got merge_mode={merge_mode!r}")
    rng = rng or np.random.default_rng(0)
    old_slots, old_index = np.unique(previous, return_inverse=True)
    k_old, k_new = len(old_slots), int(labels.max()) + 1
    overlap = np.zeros((k_old, k_new), dtype=np.int64)
    np.add.at(overlap, (old_index, labels), 1)
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    old_members = [np.flatnonzero(old_index == k) for k in range(k_old)]
    new_members = [np.flatnonzero(labels == c) for c in range(k_new)]
    old_size = np.array([len(m) for m in old_members])

    slot_of_new = np.full(k_new, -1, dtype=np.int64)
    slot_of_new[cols] = old_slots[rows]
    ops: list[SlotOp] = []
    if k_new > k_old:  # split: unmatched new groups copy the old network they overlap most
        free = iter(sorted(set(range(n_slots)) - set(int(s) for s in old_slots)))
        for c in sorted(set(range(k_new)) - set(cols.tolist())):
            best = np.flatnonzero(overlap[:, c] == overlap[:, c].max())
            src = _closest(best, old_members, new_members[c], distance)
            slot_of_new[c] = next(free)
            ops.append(SlotOp("copy", int(slot_of_new[c]), (int(old_slots[src]),), (1.0,)))
        case = "split"
    elif k_new < k_old:  # merge: unmatched old groups join the new group that took most of their agents
        matched_old = dict(zip(cols.tolist(), rows.tolist(), strict=True))  # new group -> matched old group
        joins: dict[int, list[int]] = {c: [matched_old[c]] for c in range(k_new)}
        for k in sorted(set(range(k_old)) - set(rows.tolist())):
            best = np.flatnonzero(overlap[k] == overlap[k].max())
            c = _closest(best, new_members, old_members[k], distance)
            joins[c].append(k)
        for c, olds in joins.items():
            if len(olds) == 1:
                continue
            counts = old_size[olds].astype(float)
            if merge_mode == "majority":  # ties keep the matched (first) network
                weights = np.eye(len(olds))[int(np.argmax(counts))]
            elif merge_mode == "random":
                weights = np.eye(len(olds))[int(rng.integers(len(olds)))]
            elif merge_mode == "average":
                weights = np.full(len(olds), 1.0 / len(olds))
            else:
                weights = counts / counts.sum()
            sources = tuple(int(old_slots[k]) for k in olds)
            ops.append(SlotOp("merge", int(slot_of_new[c]), sources, tuple(float(w) for w in weights)))
        case = "merge"
    else:
        case = "same"
    assignment = slot_of_new[labels]
    return SharingPlan(
        tuple(int(a) for a in assignment),
        tuple(int(a) for a in previous),
        tuple(int(v) for v in labels),
        case,
        tuple(ops),
        n_slots,
    )
