"""Heterogeneity distances (HetDPS): closed-form W2 between the diagonal Gaussians of a CVAE."""

from hetplug.distance.wasserstein import gaussian_w2, pairwise_gaussian_w2

__all__ = ["gaussian_w2", "pairwise_gaussian_w2"]
