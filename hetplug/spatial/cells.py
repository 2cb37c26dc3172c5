"""Cell partitions (SHEP section 4.1): agent positions -> macro-cell ids -> density field.

The partition is metric-agnostic: a grid over a box (Euclidean tasks) or any
user-given assignment with its own adjacency (graphs, geodesic neighbourhoods).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch

from hetplug._checks import (
    check_bool,
    check_choice,
    check_device,
    check_int_sequence,
    check_number_sequence,
    check_tensor,
    check_values,
)
from hetplug.spatial.weights import SpatialWeights


class CellPartition:
    """Base class: ``assign`` positions to M cells; ``weights`` says which cells are adjacent."""

    num_cells: int
    weights: SpatialWeights

    def assign(self, positions: torch.Tensor) -> torch.Tensor:
        """Cell ids ``[..., N]`` (int64 in ``[0, M)``) for positions ``[..., N, D]``."""
        raise NotImplementedError

    def _assign_unchecked(self, positions: torch.Tensor) -> torch.Tensor:
        """:meth:`assign` after :meth:`density` has checked the positions' values."""
        return self.assign(positions)

    def density(
        self, positions: torch.Tensor, alive: torch.Tensor | None = None, check: bool = True
    ) -> torch.Tensor:
        """Density field ``p_i = n_i / N`` over alive agents (SHEP 4.1).

        Args:
            positions: ``[..., N, D]`` agent positions.
            alive: ``[..., N]`` bool mask or non-negative weights; dead agents are not
                counted. Where no agent is alive the density is all zeros.
            check: refuse NaN or inf positions and negative or non-finite ``alive`` weights
                (one host synchronisation). Callers that validated them pass False.

        Returns:
            ``[..., M]`` floating densities that sum to 1 (or 0).
        """
        check_tensor("positions", positions, dtype="real")
        if alive is not None:
            check_tensor("alive", alive, dtype="bool_or_real")
        if check:
            check_values(
                [("positions", positions, "finite", None), ("alive", alive, "finite_nonnegative", None)]
            )
        cells = self._assign_unchecked(positions)
        dtype = positions.dtype if positions.is_floating_point() else torch.float32
        if alive is None:
            count = torch.ones(cells.shape, dtype=dtype, device=cells.device)
        else:
            if tuple(alive.shape) != tuple(cells.shape):
                raise ValueError(
                    f"alive must have shape {tuple(cells.shape)} (positions without the last dim), "
                    f"got {tuple(alive.shape)}"
                )
            count = alive.to(dtype)
        counts = torch.zeros(*cells.shape[:-1], self.num_cells, dtype=dtype, device=cells.device)
        counts.scatter_add_(-1, cells, count)
        total = count.sum(-1, keepdim=True)
        return counts / total.clamp_min(1.0)


class GridCells(CellPartition):
    """A regular grid of ``prod(shape)`` cells over the box ``[low, high]``.

    Positions outside the box fall into the border cells. Cells are numbered in
    row-major order of ``shape`` (the last axis varies fastest).

    Args:
        low: lower corner, one value per dimension D.
        high: upper corner.
        shape: cells per dimension, e.g. ``(32, 32)``.
        contiguity: ``"rook"`` (cells sharing a face) or ``"queen"`` (sharing a face,
            edge or corner), as libpysal's ``lat2W``.

    Example:
        >>> cells = GridCells(low=(0, 0), high=(1, 1), shape=(4, 4))
        >>> cells.density(torch.tensor([[0.1, 0.1], [0.9, 0.9]])).shape
        torch.Size([16])
    """

    def __init__(
        self,
        low: Sequence[float],
        high: Sequence[float],
        shape: Sequence[int],
        contiguity: str = "rook",
        device: torch.device | str = "cpu",
    ) -> None:
        check_choice("contiguity", contiguity, ("rook", "queen"))
        shape = check_int_sequence("shape", shape, low=1)
        low = check_number_sequence("low", low, length=len(shape))
        high = check_number_sequence("high", high, length=len(shape))
        device = check_device("device", device)
        if any(h <= lo for lo, h in zip(low, high, strict=True)):
            raise ValueError(f"high must exceed low in every dimension, got high={high!r} with low={low!r}")
        self.shape = shape
        self.contiguity = contiguity
        self.num_cells = int(torch.tensor(shape).prod())
        self.low = torch.tensor(low, dtype=torch.float64, device=device)
        self.high = torch.tensor(high, dtype=torch.float64, device=device)
        self._sizes = torch.tensor(shape, dtype=torch.long)
        strides = [1] * len(shape)
        for d in range(len(shape) - 2, -1, -1):
            strides[d] = strides[d + 1] * shape[d + 1]
        self._strides = torch.tensor(strides, dtype=torch.long)
        self.weights = self._grid_weights(device)
        self._cache: dict[tuple[str, torch.dtype], tuple[torch.Tensor, ...]] = {}

    def _grid_weights(self, device: torch.device | str) -> SpatialWeights:
        coords = torch.stack(
            torch.meshgrid(*[torch.arange(s) for s in self.shape], indexing="ij"), -1
        ).reshape(-1, len(self.shape))
        ids = torch.arange(self.num_cells)
        rows, cols = [], []
        for offset in itertools.product((-1, 0, 1), repeat=len(self.shape)):
            moved = sum(o != 0 for o in offset)
            if moved == 0 or (self.contiguity == "rook" and moved > 1):
                continue
            nb = coords + torch.tensor(offset)
            ok = ((nb >= 0) & (nb < torch.tensor(self.shape))).all(-1)
            rows.append(ids[ok])
            cols.append((nb[ok] * self._strides).sum(-1))
        rows_t, cols_t = torch.cat(rows), torch.cat(cols)
        order = torch.argsort(rows_t * self.num_cells + cols_t)
        rows_t, cols_t = rows_t[order], cols_t[order]
        values = torch.ones(rows_t.shape, dtype=torch.float64)
        return SpatialWeights(
            rows_t.to(device),
            cols_t.to(device),
            values.to(device),
            self.num_cells,
            (self.shape, self.contiguity),
        )

    def assign(self, positions: torch.Tensor, check: bool = True) -> torch.Tensor:
        """Cell ids ``[..., N]`` of positions ``[..., N, D]``. Positions outside the box fall
        into the border cells (documented: agents may step slightly outside). NaN or inf
        positions are refused (one host synchronisation), unless ``check=False``: then, so
        that nothing indexes out of range, NaN falls into cell 0 and inf into a border cell."""
        check_tensor("positions", positions, dtype="real")
        if positions.dim() < 2 or positions.shape[-1] != len(self.shape):
            raise ValueError(
                f"positions must have shape [..., N, {len(self.shape)}] for a {len(self.shape)}-D grid, "
                f"got positions of shape {tuple(positions.shape)}"
            )
        check_bool("check", check)
        if check:
            check_values([("positions", positions, "finite", None)])
        # Floating-point binning and one matmul with the strides: ~4x fewer passes over
        # [..., N, D] than integer ops (cell ids stay exact below 2**24 cells in float32).
        dtype = positions.dtype if positions.dtype in (torch.float32, torch.float64) else torch.float32
        low, scale, top, strides = self._constants(positions.device, dtype)
        idx = ((positions.to(dtype) - low) * scale).floor_().nan_to_num_(nan=0.0)
        idx = torch.minimum(idx.clamp_(min=0), top)
        return (idx @ strides).long()

    def _assign_unchecked(self, positions: torch.Tensor) -> torch.Tensor:
        return self.assign(positions, check=False)

    def _constants(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """Binning constants on ``device``, cached so per-step calls copy nothing."""
        key = (str(device), dtype)
        if key not in self._cache:
            scale = self._sizes.to(torch.float64) / (self.high - self.low).cpu()
            self._cache[key] = tuple(
                t.to(device=device, dtype=dtype)
                for t in (self.low.cpu(), scale, self._sizes - 1, self._strides.cpu())
            )
        return self._cache[key]


class GraphCells(CellPartition):
    """Cells defined by a user-given assignment and adjacency (metric-agnostic partition).

    Args:
        assign: function from positions ``[..., N, D]`` to int64 cell ids ``[..., N]``.
        weights: ``[M, M]`` adjacency weights: a tensor, numpy array, scipy sparse matrix
            or :class:`SpatialWeights`.
        check_ids: verify that ``assign`` returns ids in ``[0, M)``. The check costs one
            host synchronisation per call; switch it off on GPU once the function is trusted.

    Example (agents on the nodes of a graph, cells = nodes, geodesic neighbourhoods):
        >>> dist = torch.tensor([[0., 1, 2], [1, 0, 1], [2, 1, 0]])
        >>> cells = GraphCells.from_geodesic(dist, radius=1.0, assign=lambda p: p[..., 0].long())
    """

    def __init__(
        self, assign: Callable[[torch.Tensor], torch.Tensor], weights: Any, check_ids: bool = True
    ) -> None:
        if not callable(assign):
            raise ValueError(f"assign must be callable, got {type(assign).__name__}")
        self._assign = assign
        self.check_ids = check_ids
        self.weights = weights if isinstance(weights, SpatialWeights) else SpatialWeights.from_dense(weights)
        self.num_cells = self.weights.num_cells

    @classmethod
    def from_geodesic(
        cls,
        distances: torch.Tensor,
        radius: float,
        assign: Callable[[torch.Tensor], torch.Tensor],
    ) -> GraphCells:
        """Binary neighbourhoods: cells i != j are adjacent when ``distances[i, j] <= radius``."""
        d = torch.as_tensor(distances, dtype=torch.float64)
        if d.dim() != 2 or d.shape[0] != d.shape[1]:
            raise ValueError(f"distances must be square [M, M], got shape {tuple(d.shape)}")
        adjacency = (d <= radius) & ~torch.eye(d.shape[0], dtype=torch.bool)
        return cls(assign, adjacency.to(torch.float64))

    def assign(self, positions: torch.Tensor) -> torch.Tensor:
        cells = self._assign(positions)
        if not isinstance(cells, torch.Tensor) or cells.dtype != torch.long:
            raise ValueError("assign must return an int64 tensor of cell ids")
        if (
            self.check_ids
            and cells.numel()
            and (bool((cells < 0).any()) or bool((cells >= self.num_cells).any()))
        ):
            raise ValueError(f"assign returned cell ids outside [0, {self.num_cells})")
        return cells
