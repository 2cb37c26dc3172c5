"""Replay: prioritised sampling over ring storage, and the plain PER plugin."""

from hetplug.replay.per import PERConfig, PERPlugin
from hetplug.replay.sampler import PrioritizedSampler, SamplerConfig

__all__ = ["PERConfig", "PERPlugin", "PrioritizedSampler", "SamplerConfig"]
