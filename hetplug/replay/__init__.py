"""Replay: prioritised sampling over ring storage, large-batch selection, the PER plugin."""

from hetplug.replay.large_batch import large_batch_select
from hetplug.replay.per import PERConfig, PERPlugin
from hetplug.replay.sampler import PrioritizedSampler, SamplerConfig

__all__ = ["PERConfig", "PERPlugin", "PrioritizedSampler", "SamplerConfig", "large_batch_select"]
