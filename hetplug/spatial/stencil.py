"""Moran's I terms on a regular lattice by a neighbour stencil (the fast path of
:func:`hetplug.spatial.morans_i` for :class:`~hetplug.spatial.GridCells`).

On a rook or queen lattice the weights are symmetric, so eq. (2)'s cross-product sum
``sum_ij w_ij z_i z_j`` is a sum over the lattice's undirected pairs, one stencil offset
at a time (rook: one per axis; queen: half of the 3^D - 1 box offsets):

    sum_ij w_ij z_i z_j = sum_offsets sum_i z_i z_{i+offset} (w_{i,i+offset} + w_{i+offset,i})

with ``w_ij = 1`` (``"b"``, ``"o"``) or ``1 / deg_i`` (``"r"``, row-standardised). This
replaces the sparse product's gather and scatter over the ``nnz`` edges, whose
``[B, nnz]`` intermediates are 4-8 times the field and made float64 fall off a cliff.

Each field is laid out with one zero cell appended to every axis (``[*(shape + 1)]``) and
the batch is flattened into one contiguous vector. A stencil offset is then a shift of
the whole vector by ``sum_k o_k stride_k``: a neighbour beyond the grid's edge lands on a
zero pad cell (also across fields), so each offset is one contiguous product over all
fields at once, weighted per cell by one matrix-vector product.
"""

from __future__ import annotations

import itertools
import math
import threading

import torch

BLOCK_BYTES = 1 << 21
"""Bytes per buffer of a block of fields on the CPU (two buffers per block stay in L2)."""

_LOCAL = threading.local()


def padded_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(s + 1 for s in shape)


def lattice_degrees(shape: tuple[int, ...], contiguity: str) -> torch.Tensor:
    """``[*shape]`` float64 number of neighbours of every cell (libpysal's ``lat2W``)."""
    per_axis = []
    for size in shape:
        count = torch.full((size,), 2.0, dtype=torch.float64)
        count[0] -= 1
        count[-1] -= 1
        per_axis.append(count.clamp_min(0))
    grids = torch.meshgrid(*per_axis, indexing="ij")
    if contiguity == "rook":
        return sum(grids, torch.zeros(shape, dtype=torch.float64))
    # Queen: the 3^D box clipped to the grid, minus the cell itself.
    box = torch.ones(shape, dtype=torch.float64)
    for count in grids:
        box = box * (1 + count)
    return box - 1


def lattice_offsets(shape: tuple[int, ...], contiguity: str) -> list[int]:
    """Flat shifts (in the padded layout) of the stencil offsets with first nonzero
    component +1: every undirected neighbour pair once. All are positive."""
    padded = padded_shape(shape)
    strides = [math.prod(padded[k + 1 :]) for k in range(len(padded))]
    shifts = []
    for offset in itertools.product((-1, 0, 1), repeat=len(shape)):
        nonzero = [o for o in offset if o]
        if not nonzero or nonzero[0] < 0 or (contiguity == "rook" and len(nonzero) > 1):
            continue
        shifts.append(sum(o * s for o, s in zip(offset, strides, strict=True)))
    return shifts


def lattice_transform(
    shape: tuple[int, ...], contiguity: str, transformation: str
) -> tuple[list[int], torch.Tensor, float]:
    """``(shifts, pair_weights [n_offsets, prod(shape + 1)], S0)`` of esda's transformation.

    ``shifts`` from :func:`lattice_offsets`; ``pair_weights[k, i] = w_{i, i+shift_k} + w_{i+shift_k, i}`` in the padded layout
    (its value where the pair leaves the grid is irrelevant: one side's z is a zero pad).
    ``"r"``: ``w_ij = 1 / deg_i`` (an island, deg 0, has an empty row) and S0 is the number
    of cells with a neighbour. ``"b"``, ``"o"``: ``w_ij = 1`` (a lattice's original weights
    are binary) and S0 is the number of directed edges.
    """
    deg = lattice_degrees(shape, contiguity)
    row = torch.zeros(padded_shape(shape), dtype=torch.float64)
    inner = tuple(slice(0, s) for s in shape)
    if transformation == "r":
        row[inner] = torch.where(deg > 0, 1.0 / deg.clamp_min(1), 0.0)
        s0 = float((deg > 0).sum())
    else:
        row[inner] = 1.0
        s0 = float(deg.sum())
    row = row.reshape(-1)
    size = row.numel()
    extended = torch.cat([row, torch.zeros(size, dtype=torch.float64)])
    shifts = lattice_offsets(shape, contiguity)
    pair = torch.stack([row + extended[s : s + size] for s in shifts]) if shifts else row.new_zeros(0, size)
    return shifts, pair, s0


def _buffers(
    dtype: torch.dtype, device: torch.device, padded: tuple[int, ...], numel: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(zp, prod)``, each ``[numel]``; ``zp`` starts at zero (its pad cells stay 0).

    On the CPU they are kept per thread and reused: fresh multi-megabyte tensors are
    page-faulted in on every call, which cost as much as the arithmetic (and more in
    float64, whose buffers are twice the size). Other devices have caching allocators.
    """
    if device.type != "cpu":
        return torch.zeros(numel, dtype=dtype, device=device), torch.empty(numel, dtype=dtype, device=device)
    cache = _LOCAL.__dict__.setdefault("buffers", {})
    # One entry per dtype and grid (the pad cells depend on the shape), grown to the largest
    # block seen: at most BLOCK_BYTES, or one field.
    key = (dtype, padded)
    if key not in cache or cache[key][0].numel() < numel:
        cache[key] = (torch.zeros(numel, dtype=dtype), torch.empty(numel, dtype=dtype))
    zp, prod = cache[key]
    return zp[:numel], prod[:numel]


def _lattice_block(
    values: torch.Tensor, zp: torch.Tensor, prod: torch.Tensor, shape: tuple[int, ...],
    shifts: list[int], pair_weights: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    b = values.shape[0]
    padded = padded_shape(shape)
    size = math.prod(padded)
    z = zp.view(b, *padded)[(slice(None), *(slice(0, s) for s in shape))]
    torch.sub(values.reshape(b, *shape), values.mean(-1).view(b, *([1] * len(shape))), out=z)
    numerator = values.new_zeros(b)
    for k, s in enumerate(shifts):  # 0 < s < size <= zp.numel()
        torch.mul(zp[:-s], zp[s:], out=prod[:-s])  # z_i z_{i+offset}
        prod[-s:] = 0
        numerator += torch.mv(prod.view(b, size), pair_weights[k])
    return numerator, torch.linalg.vector_norm(zp.view(b, size), dim=-1).square()


def lattice_moran_terms(
    values: torch.Tensor, shape: tuple[int, ...], shifts: list[int], pair_weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum_ij w_ij z_i z_j, sum_i z_i^2)``, each ``[...]``, for fields ``values [..., M]``.

    ``z = y - mean(y)``; ``shifts`` and ``pair_weights`` from :func:`lattice_transform`
    (the weights in ``values``' dtype and device). Not differentiable: it writes into
    reused buffers. On the CPU, fields go in blocks of at most ``BLOCK_BYTES`` per buffer,
    so the buffers stay bounded.
    """
    lead = values.shape[:-1]
    values = values.reshape(-1, values.shape[-1])
    b = values.shape[0]
    if b == 0:
        return values.new_zeros(lead), values.new_zeros(lead)
    padded = padded_shape(shape)
    size = math.prod(padded)
    block = b
    if values.device.type == "cpu":  # equal blocks of at most BLOCK_BYTES per buffer (or one field)
        blocks = -(-b * size * values.element_size() // BLOCK_BYTES)
        block = max(1, -(-b // blocks))
    zp, prod = _buffers(values.dtype, values.device, padded, block * size)
    parts = []
    for start in range(0, b, block):
        n = min(block, b - start) * size
        parts.append(
            _lattice_block(values[start : start + block], zp[:n], prod[:n], shape, shifts, pair_weights)
        )
    if len(parts) == 1:
        numerator, z2 = parts[0]
    else:
        numerator, z2 = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    return numerator.view(lead), z2.view(lead)
