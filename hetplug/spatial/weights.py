"""Sparse spatial weights over M cells, with esda's transformations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from hetplug._checks import check_choice
from hetplug.spatial.stencil import lattice_transform

TRANSFORMATIONS = ("r", "b", "o")


@dataclass
class SpatialWeights:
    """A sparse ``[M, M]`` weight matrix ``w_ij`` in coordinate form (no explicit zeros).

    Attributes:
        rows: ``[nnz]`` int64 row indices i.
        cols: ``[nnz]`` int64 column indices j.
        values: ``[nnz]`` weights w_ij (any real values; asymmetric allowed).
        num_cells: M.
        lattice: ``(shape, contiguity)`` when these are exactly the binary rook/queen weights
            of a regular grid of that shape (set by :class:`~hetplug.spatial.GridCells`);
            :func:`~hetplug.spatial.morans_i` then uses a neighbour stencil instead of the
            sparse product. None for any other weights.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor
    num_cells: int
    lattice: tuple[tuple[int, ...], str] | None = None
    _cache: dict[Any, tuple[torch.Tensor, ...]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not (self.rows.shape == self.cols.shape == self.values.shape) or self.rows.dim() != 1:
            raise ValueError(
                "rows, cols and values must be 1-D and of equal length, got shapes "
                f"{tuple(self.rows.shape)}, {tuple(self.cols.shape)}, {tuple(self.values.shape)}"
            )
        if self.num_cells < 1:
            raise ValueError(f"num_cells must be >= 1, got num_cells={self.num_cells}")
        if self.rows.numel():
            lo = int(torch.minimum(self.rows.min(), self.cols.min()))
            hi = int(torch.maximum(self.rows.max(), self.cols.max()))
            if lo < 0 or hi >= self.num_cells:
                raise ValueError(
                    f"weight indices must lie in [0, {self.num_cells}), got index range [{lo}, {hi}]"
                )
        if not bool(torch.isfinite(self.values).all()):
            raise ValueError("weight values must be finite")
        keep = self.values != 0
        self.rows, self.cols, self.values = self.rows[keep], self.cols[keep], self.values[keep]

    @classmethod
    def from_dense(cls, matrix: Any) -> SpatialWeights:
        """From a dense ``[M, M]`` tensor, numpy array or scipy sparse matrix."""
        if hasattr(matrix, "tocoo"):  # scipy sparse
            coo = matrix.tocoo()
            return cls(
                torch.as_tensor(coo.row, dtype=torch.long),
                torch.as_tensor(coo.col, dtype=torch.long),
                torch.as_tensor(coo.data, dtype=torch.float64),
                int(coo.shape[0]),
            )
        m = torch.as_tensor(np.asarray(matrix) if not isinstance(matrix, torch.Tensor) else matrix)
        if m.is_sparse:
            m = m.to_dense()
        if m.dim() != 2 or m.shape[0] != m.shape[1]:
            raise ValueError(f"weights must be a square [M, M] matrix, got shape {tuple(m.shape)}")
        rows, cols = torch.nonzero(m, as_tuple=True)
        return cls(rows, cols, m[rows, cols].to(torch.float64), int(m.shape[0]))

    def to_dense(self) -> torch.Tensor:
        out = torch.zeros(self.num_cells, self.num_cells, dtype=self.values.dtype, device=self.values.device)
        out[self.rows, self.cols] = self.values
        return out

    def to(self, device: torch.device | str) -> SpatialWeights:
        return SpatialWeights(
            self.rows.to(device), self.cols.to(device), self.values.to(device), self.num_cells, self.lattice
        )

    def transformed(
        self, transformation: str, dtype: torch.dtype, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(rows, cols, values, S0)`` after esda's transformation, cached per dtype/device.

        ``"r"``: rows standardised to sum 1 (island rows stay empty); ``"b"``: every
        neighbour weighs 1; ``"o"``: the original values. ``S0`` is the sum of the values.
        """
        check_choice("transformation", transformation, TRANSFORMATIONS)
        key = (transformation, dtype, str(device))
        if key not in self._cache:
            values = self.values.to(device=device, dtype=torch.float64)
            rows = self.rows.to(device)
            if transformation == "b":
                values = torch.ones_like(values)
            elif transformation == "r":
                row_sum = torch.zeros(self.num_cells, dtype=values.dtype, device=device)
                row_sum.index_add_(0, rows, values)
                values = values / row_sum[rows]
            self._cache[key] = (rows, self.cols.to(device), values.to(dtype), values.sum().to(dtype))
        return self._cache[key]

    def lattice_transformed(
        self, transformation: str, dtype: torch.dtype, device: torch.device
    ) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """``(shifts, pair_weights, S0)`` of the lattice stencil (``lattice`` set), cached
        per dtype/device (see :func:`hetplug.spatial.stencil.lattice_transform`)."""
        if self.lattice is None:
            raise ValueError("these weights are not a lattice's (lattice=None)")
        check_choice("transformation", transformation, TRANSFORMATIONS)
        key = ("lattice", transformation, dtype, str(device))
        if key not in self._cache:
            shifts, pair, s0 = lattice_transform(*self.lattice, transformation)
            self._cache[key] = (
                shifts,
                pair.to(device=device, dtype=dtype),
                torch.tensor(s0, dtype=dtype, device=device),
            )
        return self._cache[key]
