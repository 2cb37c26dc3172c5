"""A third-party plugin used by the contract tests (loaded through a fake entry point)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

import hetplug
from hetplug._checks import check_range


@dataclass
class ToyConfig:
    scale: float = 1.0
    """Multiplies everything the plugin returns."""

    def __post_init__(self) -> None:
        check_range("scale", self.scale, 0.0)


class ToyPlugin:
    config_class = ToyConfig

    def __init__(self, config: ToyConfig) -> None:
        self.config = config
        self.calls: list[str] = []
        self.spec = None

    @hetplug.hookimpl
    def hetplug_configure(self, spec):
        self.calls.append("configure")
        self.spec = spec

    @hetplug.hookimpl
    def hetplug_trajectories_collected(self, batch):
        self.calls.append("collected")
        return hetplug.CollectedResult(intrinsic_reward=torch.full_like(batch.reward, self.config.scale))

    @hetplug.hookimpl
    def hetplug_auxiliary_losses(self, batch, update):
        self.calls.append("auxiliary")
        return {"toy/loss": torch.tensor(self.config.scale * update)}

    @hetplug.hookimpl
    def hetplug_after_update(self, update):
        self.calls.append("after_update")
        return {"toy/update": update}
