"""Heterogeneity distances (HetDPS section 4): which agents differ, and by how much.

* :func:`gaussian_w2`, :func:`pairwise_gaussian_w2`: closed-form W2 between diagonal Gaussians.
* :class:`DistanceEstimator`: a sample pool and a CVAE (model-based, eq. 4, or model-free,
  eq. 5) -> the ``[N, N]`` distance matrix of eq. (3).
* :func:`build_features` and :data:`HETEROGENEITY_TYPES`: the (x, y) of each heterogeneity
  type of Table 1 and of the meta-transition (Appendix G).
* :func:`gaussian_policy_distance`, :func:`categorical_policy_distance`: eq. (16) from
  known policies.
"""

from hetplug.distance.cvae import CVAE, CVAEConfig
from hetplug.distance.estimator import DistanceEstimator
from hetplug.distance.features import HETEROGENEITY_TYPES, build_features, replicate
from hetplug.distance.policy import categorical_policy_distance, gaussian_policy_distance
from hetplug.distance.pool import SamplePool
from hetplug.distance.wasserstein import gaussian_w2, pairwise_gaussian_w2

__all__ = [
    "CVAE",
    "CVAEConfig",
    "DistanceEstimator",
    "HETEROGENEITY_TYPES",
    "SamplePool",
    "build_features",
    "categorical_policy_distance",
    "gaussian_policy_distance",
    "gaussian_w2",
    "pairwise_gaussian_w2",
    "replicate",
]
