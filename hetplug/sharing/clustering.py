"""Grouping agents by heterogeneity distance: affinity propagation on S = -D (HetDPS section 5).

The paper does not state AP's *preference* (the self-similarity s(k, k) that decides how many
exemplars appear). Our default, ``"median"``, is the median of the **off-diagonal**
similarities, Frey & Dueck's recommendation for a moderate number of clusters. scikit-learn's
own default (``preference=None``) takes the median of the whole matrix, whose N zero
diagonal entries pull the value towards 0, so every agent becomes costlier to attach than
to promote: it favours many clusters, more so for small teams (4 agents: a quarter of the
entries are zeros). ``"min"`` (the smallest similarity) gives few clusters; a float sets
s(k, k) directly; ``"sklearn"`` reproduces scikit-learn's default.

Oscillation: small teams give similarity matrices full of ties (the median preference then
equals some s(i, k)), and AP's messages can oscillate at damping 0.5 without converging
(three agents, two close and one far, measured). Frey & Dueck's remedy is a larger damping
factor: when a fit does not converge, it is run once more at ``retry_damping`` (0.9 by
default; None turns the retry off). :class:`Clustering` records the damping that produced
the labels.

Degenerate inputs: when every off-diagonal distance is equal (or all are at most
``homogeneous_below``), all agents form one group without running AP. When AP does not
converge (after the retry), :func:`cluster_agents` reports ``converged=False`` and the
manager keeps its previous grouping.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import AffinityPropagation
from sklearn.exceptions import ConvergenceWarning

PREFERENCES = ("median", "min", "sklearn")


@dataclass(frozen=True)
class Clustering:
    """AP's result: ``labels [N]`` (0..n_clusters-1, numbered by first appearance)."""

    labels: np.ndarray
    converged: bool
    n_iter: int
    preference: float | None
    damping: float | None = None  # the damping of the fit that gave the labels (None: no fit)


def check_preference(preference: str | float) -> None:
    """A name of :data:`PREFERENCES` or a finite number (``TypeError`` for anything else)."""
    if isinstance(preference, str):
        if preference not in PREFERENCES:
            raise ValueError(
                f"preference must be one of {list(PREFERENCES)} or a number, got preference={preference!r}"
            )
        return
    if isinstance(preference, (bool, np.bool_)) or not isinstance(preference, (int, float, np.number)):
        raise TypeError(
            f"preference must be one of {list(PREFERENCES)} or a number, got preference={preference!r}"
        )
    if not np.isfinite(preference):
        raise ValueError(
            f"preference must be one of {list(PREFERENCES)} or a finite number, got preference={preference!r}"
        )


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Number clusters 0, 1, ... in order of their first agent."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse].astype(np.int64)


def cluster_agents(
    distance: np.ndarray,
    preference: str | float = "median",
    damping: float = 0.5,
    max_iter: int = 200,
    convergence_iter: int = 15,
    random_state: int = 0,
    homogeneous_below: float = 0.0,
    retry_damping: float | None = 0.9,
) -> Clustering:
    """Affinity propagation on the similarity ``-distance`` (a checked ``[N, N]`` numpy array);
    a fit that does not converge is repeated once at ``retry_damping`` (if larger)."""
    check_preference(preference)
    n = distance.shape[0]
    off = distance[~np.eye(n, dtype=bool)]
    if n == 1 or np.ptp(off) == 0 or off.max() <= homogeneous_below:
        return Clustering(np.zeros(n, dtype=np.int64), True, 0, None)
    similarity = -distance
    if preference == "median":
        pref: float | None = float(np.median(-off))
    elif preference == "min":
        pref = float((-off).min())
    elif preference == "sklearn":
        pref = None
    else:
        pref = float(preference)
    result = _fit(similarity, pref, damping, max_iter, convergence_iter, random_state)
    if not result.converged and retry_damping is not None and retry_damping > damping:
        result = _fit(similarity, pref, retry_damping, max_iter, convergence_iter, random_state)
    return result


def _fit(similarity: np.ndarray, pref: float | None, damping: float, max_iter: int,
         convergence_iter: int, random_state: int) -> Clustering:  # fmt: skip
    ap = AffinityPropagation(
        affinity="precomputed",
        preference=pref,
        damping=damping,
        max_iter=max_iter,
        convergence_iter=convergence_iter,
        random_state=random_state,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        ap.fit(similarity)
    failed = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    labels = np.asarray(ap.labels_)
    if failed or (labels < 0).any() or len(ap.cluster_centers_indices_) == 0:
        return Clustering(labels, False, int(ap.n_iter_), pref, damping)
    return Clustering(_relabel(labels), True, int(ap.n_iter_), pref, damping)
