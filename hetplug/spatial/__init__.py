"""Spatial heterogeneity: cell partitions, spatial weights and descriptors (SHEP 4.1-4.2)."""

from hetplug.spatial.cells import CellPartition, GraphCells, GridCells
from hetplug.spatial.descriptors import (
    action_diversity_entropy,
    bin_actions,
    morans_i,
    occupancy_entropy,
)
from hetplug.spatial.weights import SpatialWeights

__all__ = [
    "CellPartition",
    "GraphCells",
    "GridCells",
    "SpatialWeights",
    "action_diversity_entropy",
    "bin_actions",
    "morans_i",
    "occupancy_entropy",
]
