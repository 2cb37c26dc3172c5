"""Spatial heterogeneity descriptors (SHEP section 4.2), batched over any leading dims.

All functions are pure torch and device-agnostic. Each checks its arguments' types and
shapes (free) and, unless called with ``check=False``, their values (NaN, ranges: one host
synchronisation); :func:`hetplug.shep.scoring.describe` validates once and calls them
with ``check=False``, free of host synchronisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from hetplug._checks import (
    check_bool,
    check_choice,
    check_int,
    check_number_sequence,
    check_tensor,
    check_values,
)
from hetplug.spatial.cells import CellPartition
from hetplug.spatial.stencil import lattice_moran_terms
from hetplug.spatial.weights import TRANSFORMATIONS, SpatialWeights

#: how far a density's row sum may be from 1 (float32 sums of many cells)
DISTRIBUTION_TOLERANCE = 1e-4


def _entropy_of(prob: torch.Tensor, normalize: bool) -> torch.Tensor:
    h = -torch.special.xlogy(prob, prob).sum(-1)  # 0 log 0 = 0
    if normalize:
        size = prob.shape[-1]
        h = h / math.log(size) if size > 1 else torch.zeros_like(h)
    return h


def occupancy_entropy(density: torch.Tensor, normalize: bool = False, check: bool = True) -> torch.Tensor:
    """Eq. (1): ``H_occ = -sum_i p_i log p_i`` over the last dim (cells), in nats.

    Args:
        density: ``[..., M]`` density field (from :meth:`CellPartition.density`): a
            distribution per row (entries >= 0 summing to 1), or all zeros (no agent).
        normalize: divide by ``log M`` so the value lies in ``[0, 1]``.
        check: refuse a ``density`` that is not a distribution (``ValueError``).
    """
    check_tensor("density", density, dtype="floating")
    if density.dim() == 0:
        raise ValueError(
            f"density must have a cell dim [..., M], got density of shape {tuple(density.shape)}"
        )
    check_bool("normalize", normalize)
    if check:
        check_values([("density", density, "distribution", DISTRIBUTION_TOLERANCE)])
    return _entropy_of(density, normalize)


def morans_i(
    values: torch.Tensor,
    weights: SpatialWeights | CellPartition | torch.Tensor,
    transformation: str = "r",
    check: bool = True,
) -> torch.Tensor:
    """Eq. (2): Moran's I of ``values`` over M cells, equal to esda's ``Moran(y, w).I``.

    ``I = M / S0 * sum_ij w_ij z_i z_j / sum_i z_i^2`` with ``z = y - mean(y)`` and ``S0``
    the sum of the transformed weights. Costs O(nnz) per field: O(M) on a grid. Weights
    of a :class:`GridCells` (``weights.lattice`` set) take a neighbour-stencil path over
    the ``[..., *shape]`` field; any other weights, and values that require grad, take
    the sparse product.

    Args:
        values: ``[..., M]`` a field per leading index (e.g. densities per env step).
        weights: sparse weights, a cell partition, or a dense ``[M, M]`` tensor.
        transformation: ``"r"`` row-standardised (esda's default), ``"b"`` binary,
            ``"o"`` original weights.
        check: refuse NaN or inf values (``ValueError``).

    Returns:
        ``[...]`` Moran's I. Where esda returns NaN we return 0: a constant field (no
        variance) or weights that sum to 0. Islands (cells with no neighbours) count in
        M but add nothing to the numerator or S0, as in esda.
    """
    check_choice("transformation", transformation, TRANSFORMATIONS)
    check_tensor("values", values, dtype="real")
    if isinstance(weights, CellPartition):
        weights = weights.weights
    elif isinstance(weights, torch.Tensor):
        weights = SpatialWeights.from_dense(weights)
    elif not isinstance(weights, SpatialWeights):
        raise TypeError(
            f"weights must be SpatialWeights, a CellPartition or an [M, M] tensor, got weights={type(weights).__name__}"
        )
    m = weights.num_cells
    if values.dim() == 0 or values.shape[-1] != m:
        raise ValueError(
            f"values must have {m} cells in the last dim, got values of shape {tuple(values.shape)}"
        )
    if check:
        check_values([("values", values, "finite", None)])
    if not values.is_floating_point():
        values = values.to(torch.float32)
    if weights.lattice is not None and not (values.requires_grad and torch.is_grad_enabled()):
        # A regular grid: the spatial lag is a neighbour stencil over [..., *shape].
        shifts, pair_weights, s0 = weights.lattice_transformed(transformation, values.dtype, values.device)
        numerator, z2 = lattice_moran_terms(values, weights.lattice[0], shifts, pair_weights)
    else:
        rows, cols, w, s0 = weights.transformed(transformation, values.dtype, values.device)
        z = values - values.mean(-1, keepdim=True)
        wz = torch.zeros_like(z).index_add_(-1, rows, z.index_select(-1, cols) * w)
        numerator = (z * wz).sum(-1)
        z2 = (z * z).sum(-1)
    # Below this the field is constant up to rounding: I is 0/0, defined as 0.
    # max |y| as max(max y, -min y): two plain reductions (vector_norm with ord=inf is ~10x slower on CPU).
    scale = torch.maximum(values.amax(-1), -values.amin(-1)).clamp_min(torch.finfo(values.dtype).tiny)
    flat = z2 <= m * (64 * torch.finfo(values.dtype).eps * scale) ** 2
    safe_s0 = torch.where(s0 == 0, torch.ones_like(s0), s0)
    # Eq. (2): I = M / S0 * sum_ij w_ij z_i z_j / sum_i z_i^2.
    moran = (m / safe_s0) * numerator / torch.where(flat, torch.ones_like(z2), z2)
    return torch.where(flat | (s0 == 0), torch.zeros_like(moran), moran)


def action_diversity_entropy(
    actions: torch.Tensor,
    n_actions: int,
    alive: torch.Tensor | None = None,
    normalize: bool = False,
    check: bool = True,
) -> torch.Tensor:
    """Action diversity entropy ``H_div``: entropy of the team's action histogram.

    Args:
        actions: ``[..., N]`` int64 discrete actions (use :func:`bin_actions` for
            continuous ones).
        n_actions: number of action categories.
        alive: ``[..., N]`` mask or non-negative weights; dead agents' actions are not counted.
        normalize: divide by ``log n_actions``.
        check: refuse actions outside ``[0, n_actions)`` and negative or non-finite
            ``alive`` weights (``ValueError``). Unchecked, such actions are clamped into range.

    Returns:
        ``[...]`` entropy in nats (0 where no agent is alive).
    """
    check_tensor("actions", actions)
    if actions.is_floating_point() or actions.dtype == torch.bool or actions.is_complex():
        raise TypeError(
            f"actions must be integer categories (bin continuous actions with bin_actions()), "
            f"got actions of dtype {actions.dtype}"
        )
    check_int("n_actions", n_actions, 1)
    if alive is not None:
        check_tensor("alive", alive, dtype="bool_or_real")
        if alive.shape != actions.shape:
            raise ValueError(
                f"alive must have the shape of actions {tuple(actions.shape)}, got alive of shape {tuple(alive.shape)}"
            )
    if check:
        check_values([("actions", actions, "below", n_actions), ("alive", alive, "finite_nonnegative", None)])
    weight = (
        torch.ones(actions.shape, dtype=torch.float32, device=actions.device)
        if alive is None
        else alive.to(torch.float32)
    )
    counts = torch.zeros(*actions.shape[:-1], n_actions, dtype=torch.float32, device=actions.device)
    counts.scatter_add_(-1, actions.long().clamp(0, n_actions - 1), weight)
    prob = counts / counts.sum(-1, keepdim=True).clamp_min(1.0)
    return _entropy_of(prob, normalize)


def bin_actions(
    actions: torch.Tensor,
    low: Sequence[float] | torch.Tensor,
    high: Sequence[float] | torch.Tensor,
    bins: int,
    check: bool = True,
) -> torch.Tensor:
    """Joint bin ids ``[..., N]`` in ``[0, bins**A)`` for continuous actions ``[..., N, A]``.

    Actions beyond ``[low, high]`` fall into the border bins; NaN or inf ones are refused
    unless ``check=False``."""
    check_tensor("actions", actions, dtype="floating")
    check_int("bins", bins, 1)
    if actions.dim() == 0:
        raise ValueError(f"actions must be [..., N, A], got actions of shape {tuple(actions.shape)}")
    if not isinstance(low, torch.Tensor):
        low = check_number_sequence("low", low, length=actions.shape[-1])
    if not isinstance(high, torch.Tensor):
        high = check_number_sequence("high", high, length=actions.shape[-1])
        if not isinstance(low, torch.Tensor) and any(h <= lo for lo, h in zip(low, high, strict=True)):
            raise ValueError(f"high must exceed low in every dimension, got high={high!r} with low={low!r}")
    if check:
        check_values([("actions", actions, "finite", None)])
    low_t = torch.as_tensor(low, dtype=actions.dtype, device=actions.device)
    high_t = torch.as_tensor(high, dtype=actions.dtype, device=actions.device)
    frac = (actions - low_t) / (high_t - low_t)
    idx = torch.floor(frac * bins).nan_to_num_(nan=0.0).clamp_(-1, bins).long().clamp(0, bins - 1)
    strides = bins ** torch.arange(actions.shape[-1] - 1, -1, -1, device=actions.device)
    return (idx * strides).sum(-1)
