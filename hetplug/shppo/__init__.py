"""SHPPO: latent-generated per-agent weights inside a parameter-shared actor.

``LatentNet`` (eq. 4), ``HeteLayer`` (eq. 5), ``InferenceNet`` (eqs. 6, 11), the actor
building block ``SHPPOActor`` and the losses of eqs. (7)-(12); ``SHPPOPlugin`` trains the
latent side through ``hetplug_auxiliary_losses``.
"""

from hetplug.shppo.losses import distance_loss, entropy_loss, inference_loss, latent_loss
from hetplug.shppo.modules import HeteLayer, InferenceNet, LatentNet, SHPPOActor
from hetplug.shppo.plugin import SHPPOConfig, SHPPOPlugin

__all__ = [
    "HeteLayer",
    "InferenceNet",
    "LatentNet",
    "SHPPOActor",
    "SHPPOConfig",
    "SHPPOPlugin",
    "distance_loss",
    "entropy_loss",
    "inference_loss",
    "latent_loss",
]
