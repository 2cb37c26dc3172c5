"""Dynamic parameter sharing (HetDPS section 5, Appendix I).

* :class:`DynamicSharingManager` (+ :class:`SharingConfig`): distance matrix -> affinity
  propagation -> Hungarian matching with the previous groups -> :class:`SharingPlan`.
* :class:`ParameterSlots`: applies a plan in place to stacked per-slot parameters, the
  optimiser's state, target networks and routing vectors; :class:`SlotMLP` is a slot model.
* :func:`cluster_agents`, :func:`match_groups`: the two steps, usable on their own.
"""

from hetplug.sharing.clustering import Clustering, cluster_agents
from hetplug.sharing.manager import DynamicSharingManager, SharingConfig, check_distance
from hetplug.sharing.plan import MERGE_MODES, SharingPlan, SlotOp, match_groups
from hetplug.sharing.slots import ParameterSlots, SlotMLP

__all__ = [
    "MERGE_MODES",
    "Clustering",
    "DynamicSharingManager",
    "ParameterSlots",
    "SharingConfig",
    "SharingPlan",
    "SlotMLP",
    "SlotOp",
    "check_distance",
    "cluster_agents",
    "match_groups",
]
