"""Large Batch Sharing (LBS): agents share TD-selected experience.

``AgentBuffers`` stores per-agent transitions; ``LargeBatchSharing`` draws the large batch,
asks the host for every learner's TD error on it and down-samples with importance weights
(``hetplug.replay.large_batch_select``); ``LBSPlugin`` exposes it as the ``lbs`` plugin.
"""

from hetplug.lbs.buffers import AgentBuffers, check_homogeneous_agents
from hetplug.lbs.sharing import LargeBatchSharing, LBSConfig

__all__ = ["AgentBuffers", "LBSConfig", "LargeBatchSharing", "check_homogeneous_agents"]
