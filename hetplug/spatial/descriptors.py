"""Spatial heterogeneity descriptors (SHEP section 4.2), batched over any leading dims.

All functions are pure torch, device-agnostic, and free of host synchronisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from hetplug._checks import check_choice
from hetplug.spatial.cells import CellPartition
from hetplug.spatial.stencil import lattice_moran_terms
from hetplug.spatial.weights import TRANSFORMATIONS, SpatialWeights


def _entropy_of(prob: torch.Tensor, normalize: bool) -> torch.Tensor:
    h = -torch.special.xlogy(prob, prob).sum(-1)  # 0 log 0 = 0
    if normalize:
        size = prob.shape[-1]
        h = h / math.log(size) if size > 1 else torch.zeros_like(h)
    return h


def occupancy_entropy(density: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """Eq. (1): ``H_occ = -sum_i p_i log p_i`` over the last dim (cells), in nats.

    Args:
        density: ``[..., M]`` density field (from :meth:`CellPartition.density`).
        normalize: divide by ``log M`` so the value lies in ``[0, 1]``.
    """
    return _entropy_of(density, normalize)


def morans_i(
    values: torch.Tensor,
    weights: SpatialWeights | CellPartition | torch.Tensor,
    transformation: str = "r",
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

    Returns:
        ``[...]`` Moran's I. Where esda returns NaN we return 0: a constant field (no
        variance) or weights that sum to 0. Islands (cells with no neighbours) count in
        M but add nothing to the numerator or S0, as in esda.
    """
    check_choice("transformation", transformation, TRANSFORMATIONS)
    if isinstance(weights, CellPartition):
        weights = weights.weights
    elif isinstance(weights, torch.Tensor):
        weights = SpatialWeights.from_dense(weights)
    m = weights.num_cells
    if values.shape[-1] != m:
        raise ValueError(f"values must have {m} cells in the last dim, got shape {tuple(values.shape)}")
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
) -> torch.Tensor:
    """Action diversity entropy ``H_div``: entropy of the team's action histogram.

    Args:
        actions: ``[..., N]`` int64 discrete actions (use :func:`bin_actions` for
            continuous ones).
        n_actions: number of action categories.
        alive: ``[..., N]`` mask; dead agents' actions are not counted.
        normalize: divide by ``log n_actions``.

    Returns:
        ``[...]`` entropy in nats (0 where no agent is alive).
    """
    if actions.dtype in (torch.float16, torch.float32, torch.float64, torch.bfloat16):
        raise ValueError("actions must be integer categories; bin continuous actions with bin_actions()")
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
) -> torch.Tensor:
    """Joint bin ids ``[..., N]`` in ``[0, bins**A)`` for continuous actions ``[..., N, A]``."""
    low_t = torch.as_tensor(low, dtype=actions.dtype, device=actions.device)
    high_t = torch.as_tensor(high, dtype=actions.dtype, device=actions.device)
    frac = (actions - low_t) / (high_t - low_t)
    idx = torch.floor(frac * bins).long().clamp(0, bins - 1)
    strides = bins ** torch.arange(actions.shape[-1] - 1, -1, -1, device=actions.device)
    return (idx * strides).sum(-1)
