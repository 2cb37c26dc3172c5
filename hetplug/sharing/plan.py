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

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

MERGE_MODES = ("majority", "random", "average", "weighted")


@dataclass(frozen=True)
class SlotOp:
    """Slot ``dst`` becomes ``sum_k weights[k] * slot sources[k]`` (``kind`` "copy" or "merge")."""

    kind: str
    dst: int
    sources: tuple[int, ...]
    weights: tuple[float, ...]

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
