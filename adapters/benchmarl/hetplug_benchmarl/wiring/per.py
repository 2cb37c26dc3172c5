"""Prioritised replay's wiring (``per``, ``shep``, or any plugin answering ``hetplug_replay_add``).

Needs from BenchMARL: a group loss that takes IS weights (:mod:`hetplug_benchmarl.losses`
says which algorithms' do, and builds a weighted subclass where TorchRL's ignores them),
and non-recurrent models (sequence storage is not supported).

Installs, per group: a buffer of trajectory slots in place of BenchMARL's (a
:class:`~hetplug_benchmarl.replay.writer.TrajectoryWriter` places each collected row at
the slot ``hetplug_replay_add`` gave it, relabelled copies after the originals; a
:class:`~hetplug_benchmarl.replay.sampler.TrajectorySampler` draws by priority and feeds
TD errors back), and the weighted loss. Off-policy the buffer keeps as many rows as
BenchMARL's memory; on-policy (MAPPO, IPPO) ``replay_window`` rollouts, prioritised by
``|advantage|`` when stored (one rollout: the storage is emptied before each).
"""

from __future__ import annotations

import torch
from torchrl.data import LazyTensorStorage

import hetplug
from hetplug_benchmarl.losses import install_weighted_loss, weighting_for
from hetplug_benchmarl.replay.buffer import HetplugReplayBuffer
from hetplug_benchmarl.replay.layout import TrajectoryLayout
from hetplug_benchmarl.replay.sampler import TrajectorySampler
from hetplug_benchmarl.replay.writer import TrajectoryWriter
from hetplug_benchmarl.wiring import GroupRun, Wiring


def td_keys(group: str) -> tuple:
    """Where BenchMARL's losses write TD errors: per-agent losses, then QMIX/VDN's mixer loss."""
    return ((group, "td_error"), "td_error")


def buffer_transform(old):
    """The transform of BenchMARL's buffer, to carry over (None when it has none)."""
    return old._transform if old._transform is not None and len(old._transform) else None


class PrioritisedReplayWiring(Wiring):
    def __init__(self, name: str, config: hetplug.HetplugConfig) -> None:
        self.name = name  # the prioritising plugin
        self.window = config.replay_window

    def check_algorithm(self, algorithm: type, on_policy: bool) -> None:
        weighting_for(algorithm)  # raises for an algorithm without a registered weighting
        if self.window != 1 and not on_policy:
            raise ValueError(
                f"replay_window={self.window} applies to on-policy algorithms (MAPPO, IPPO); off-policy "
                "buffers keep BenchMARL's memory size"
            )

    def check(self, exp, group: str) -> None:
        if exp.algorithm.has_rnn:
            raise ValueError(f"plugin {self.name!r}: recurrent models (sequence storage) are not supported")

    def spec(self, exp, group: str, spec: hetplug.HostSpec) -> hetplug.HostSpec:
        if not exp.on_policy:
            return spec
        return hetplug.HostSpec(
            **{**spec.__dict__, "capacity": spec.capacity * self.window, "rollout_storage": self.window == 1}
        )

    def install(self, exp, run: GroupRun) -> None:
        group, spec = run.group, run.spec
        weighting = weighting_for(type(exp.algorithm))
        install_weighted_loss(exp, group, weighting)
        old = exp.replay_buffers[group]
        layout = TrajectoryLayout(spec.capacity, spec.max_steps, spec.device)
        generator = torch.Generator(device=layout.device).manual_seed(int(exp.seed))
        loss = exp.losses[group]
        exp.replay_buffers[group] = HetplugReplayBuffer(
            storage=LazyTensorStorage(spec.capacity * spec.max_steps, device=spec.device),
            writer=TrajectoryWriter(layout),
            sampler=TrajectorySampler(run.pm, layout, spec.n_agents, generator),
            batch_size=old._batch_size,
            transform=buffer_transform(old),
            td_keys=td_keys(group),
            td_squared=weighting.td_squared,
            advantage_key=loss.tensor_keys.advantage if weighting.on_policy else None,
        )
        run.stores_copies = True

    def collected(self, exp, batch, run: GroupRun) -> None:
        buffer = exp.replay_buffers[run.group]
        if run.spec.rollout_storage:
            buffer.empty()  # the storage holds this rollout only (the plugin forgot the last)
        writer = buffer._writer
        writer.stage(run.pm.hook.hetplug_replay_add(batch=run.collected))
        for her, transitions in run.copies:  # Group-HER copies: stored after the originals
            writer.stage_copies(run.pm.hook.hetplug_replay_add(batch=her), transitions, her.mask.sum(-1))
