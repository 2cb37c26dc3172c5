"""Statistics of a comparison, all from rliable (Agarwal et al., 2021): no home-made bootstrap.

- IQM: the interquartile mean of the runs' scores (``rliable.metrics.aggregate_iqm``: the
  mean of the middle 50 %, robust to an outlier run yet less noisy than the median).
- CI: the 95 % stratified bootstrap confidence interval of the IQM over runs
  (``rliable.library.get_interval_estimates``, percentile method).
- P(improvement) of X over Y: the probability that a run of X scores higher than a run of
  Y (``rliable.metrics.probability_of_improvement``; 0.5 = no difference), with its
  bootstrap CI (runs of X and Y resampled independently).

Functions take plain data, ``{variant: [score per run]}``, and return plain dicts. Every call
seeds its own ``numpy.random.RandomState(seed)``, so results are reproducible.

Example:
    >>> aggregate({"iql": [1.0, 1.2, 0.9], "iql+shep": [1.1, 1.4, 1.3]}, reps=2000)
    {'iql': {'iqm': 1.0..., 'ci': [0.9..., 1.2...], 'runs': 3}, 'iql+shep': {...}}
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: bootstrap replications: rliable's colab uses 2000 for curves; each is a Python call
#: (about 0.3 ms for an IQM on this project's CPU), so 50000 takes ~17 s per variant.
REPS = 2000
CONFIDENCE = 0.95


def _rliable():
    from rliable import library, metrics

    return library, metrics


def _estimates(score_dict: Mapping[str, Any], func, reps: int, confidence: float, seed: int):
    library, _ = _rliable()
    with warnings.catch_warnings():
        # arch (under rliable) warns that RandomState is deprecated in favour of Generator
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"arch\..*")
        return library.get_interval_estimates(
            score_dict, func, reps=reps, confidence_interval_size=confidence,
            random_state=np.random.RandomState(seed),
        )  # fmt: skip


def score_matrix(scores: Sequence[float]) -> np.ndarray:
    """rliable's ``[num_runs, num_tasks]`` matrix for one task."""
    return np.asarray(scores, dtype=np.float64).reshape(-1, 1)


def iqm(scores: np.ndarray) -> np.ndarray:
    """rliable's aggregate IQM as the 1-D array ``get_interval_estimates`` expects."""
    return np.array([_rliable()[1].aggregate_iqm(scores)])


def aggregate(
    scores: Mapping[str, Sequence[float]], *, reps: int = REPS, confidence: float = CONFIDENCE, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """IQM and its stratified bootstrap CI per variant.

    Args:
        scores: ``{variant: [score per run]}``; a variant without runs gets ``None`` values.

    Returns:
        ``{variant: {"iqm": float, "ci": [low, high], "runs": n}}`` in the input's order.
    """
    present = {k: score_matrix(v) for k, v in scores.items() if len(v)}
    point, interval = _estimates(present, iqm, reps, confidence, seed) if present else ({}, {})
    return {
        k: {"iqm": float(point[k][0]), "ci": [float(x) for x in interval[k][:, 0]], "runs": len(scores[k])}
        if k in present
        else {"iqm": None, "ci": None, "runs": 0}
        for k in scores
    }


def probability_of_improvement(
    scores: Mapping[str, Sequence[float]],
    baseline: str,
    *,
    reps: int = REPS,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """P(a run of each variant scores higher than a run of ``baseline``), with its CI.

    Returns:
        ``{variant: {"value": float, "ci": [low, high], "over": baseline}}`` for every other
        variant with runs (none when the baseline has no runs).
    """
    _, metrics = _rliable()
    others = [k for k, v in scores.items() if k != baseline and len(v) and len(scores[baseline])]
    pairs = {f"{k},{baseline}": (score_matrix(scores[k]), score_matrix(scores[baseline])) for k in others}
    if not pairs:
        return {}
    point, interval = _estimates(pairs, metrics.probability_of_improvement, reps, confidence, seed)
    return {
        k: {"value": float(point[pair]), "ci": [float(x) for x in np.ravel(interval[pair])], "over": baseline}
        for k, pair in zip(others, pairs, strict=True)
    }


def iqm_over_frames(scores: np.ndarray) -> np.ndarray:
    """IQM at every evaluation point of ``[runs, tasks, points]``: rliable's
    ``aggregate_iqm`` of each ``scores[..., i]`` (scipy's 25 % trimmed mean over runs and
    tasks), computed for all points in one vectorised call."""
    from scipy.stats import trim_mean

    return trim_mean(scores.reshape(-1, scores.shape[-1]), proportiontocut=0.25, axis=0)


def curves(
    curves: Mapping[str, Sequence[Sequence[float]]],
    *,
    reps: int = REPS,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict[str, dict[str, list]]:
    """Sample-efficiency curves: IQM over runs at each evaluation point, with bootstrap CIs.

    Args:
        curves: ``{variant: [[value per point] per run]}``, every run of a variant evaluated
            at the same points.

    Returns:
        ``{variant: {"iqm": [per point], "ci": [[low per point], [high per point]]}}``.
    """
    present = {k: np.asarray(v, dtype=np.float64)[:, None, :] for k, v in curves.items() if len(v)}
    if not present:
        return {}
    point, interval = _estimates(present, iqm_over_frames, reps, confidence, seed)
    return {k: {"iqm": point[k].tolist(), "ci": interval[k].tolist()} for k in present}
