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
    def hetplug_bind(self, host):
        self.calls.append("bind")
        self.host = host

    @hetplug.hookimpl
    def hetplug_trajectories_collected(self, batch):
        self.calls.append("collected")
        bonus = torch.full(batch.reward.shape[:2], self.config.scale, device=batch.device)  # [B, T]
        return hetplug.CollectedResult(intrinsic_reward=bonus)

    @hetplug.hookimpl
    def hetplug_auxiliary_losses(self, batch, update):
        self.calls.append("auxiliary")
        return {"toy/loss": torch.tensor(self.config.scale * update)}

    @hetplug.hookimpl
    def hetplug_after_update(self, update):
        self.calls.append("after_update")
        return {"toy/update": update}


class ToyReplay:
    """A third-party prioritiser: uniform replay over a ring (hetplug's sampler with
    priority exponent 0). Used to show that the adapters wire a prioritiser they do not
    know by name exactly as they wire ``per``."""

    def __init__(self) -> None:
        self.sampler = None
        self.spec = None
        self.host = None
        self.updates = 0

    @hetplug.hookimpl
    def hetplug_configure(self, spec):
        from hetplug.replay import PrioritizedSampler

        self.spec = spec
        self.sampler = PrioritizedSampler(spec.capacity, alpha=0.0, device=spec.device)

    @hetplug.hookimpl
    def hetplug_bind(self, host):
        self.host = host

    @hetplug.hookimpl
    def hetplug_trajectories_collected(self, batch):
        if self.spec.rollout_storage:
            self.sampler.clear()

    @hetplug.hookimpl
    def hetplug_replay_add(self, batch):
        return self.sampler.add(count=batch.batch_size)

    @hetplug.hookimpl
    def hetplug_replay_sample(self, batch_size, generator):
        return self.sampler.sample(batch_size, generator)

    @hetplug.hookimpl
    def hetplug_update_priorities(self, indices, td_error, mask):
        self.updates += 1
        ones = torch.ones(indices.shape[0], dtype=torch.float64, device=self.sampler.device)
        self.sampler.update(indices.to(self.sampler.device), ones)
        return ones

    @hetplug.hookimpl
    def hetplug_after_update(self, update):
        return {"toy_replay/updates": self.updates}
