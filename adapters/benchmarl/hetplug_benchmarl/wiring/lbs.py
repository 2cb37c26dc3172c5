"""LBS's wiring: Large Batch Sharing between the independent learners of one group.

Active for an experience-sharing prioritiser (``lbs``, or any plugin whose
``hetplug_replay_sample`` takes ``td_fn``). Needs from BenchMARL: independent off-policy
learners whose group loss evaluates each agent on its own column (IQL, ISAC, IDDPG) and
non-recurrent models.

Installs, per group: the :class:`~hetplug_benchmarl.replay.lbs.LBSReplayBuffer`, whose
items are one agent's part of one stored transition (the plugin's slots are the
storage's indices), scored for every learner in one pass of the group's loss (``td_fn``).
"""

from __future__ import annotations

import torch
from torchrl.data import LazyTensorStorage

import hetplug
from hetplug_benchmarl.losses import weighting_for
from hetplug_benchmarl.replay.lbs import LBSReplayBuffer
from hetplug_benchmarl.wiring import GroupRun, Wiring
from hetplug_benchmarl.wiring.per import buffer_transform, td_keys

#: the independent off-policy algorithms LBS serves (BenchMARL class names)
LBS_ALGORITHMS = ("Iql", "Isac", "Iddpg")


class LBSWiring(Wiring):
    def __init__(self, name: str) -> None:
        self.name = name  # the sharing plugin

    def check_algorithm(self, algorithm: type, on_policy: bool) -> None:
        algorithm = algorithm.__name__
        if on_policy:
            raise ValueError(
                f"plugin {self.name!r} is not available with on-policy {algorithm}: it shares replayed "
                f"experience between independent off-policy learners ({', '.join(LBS_ALGORITHMS)})"
            )
        if algorithm not in LBS_ALGORITHMS:
            raise ValueError(
                f"plugin {self.name!r} shares experience between independent learners "
                f"({', '.join(LBS_ALGORITHMS)}); the algorithm is {algorithm}"
            )

    def check(self, exp, group: str) -> None:
        if exp.algorithm.has_rnn:
            raise ValueError(f"plugin {self.name!r}: recurrent models (sequence storage) are not supported")

    def spec(self, exp, group: str, spec: hetplug.HostSpec) -> hetplug.HostSpec:
        # items are transitions: T = 1, one slot per stored transition
        return hetplug.HostSpec(
            **{**spec.__dict__, "max_steps": 1, "capacity": spec.capacity * spec.max_steps}
        )

    def install(self, exp, run: GroupRun) -> None:
        group, spec = run.group, run.spec
        old = exp.replay_buffers[group]
        exp.replay_buffers[group] = LBSReplayBuffer(
            pm=run.pm,
            loss=exp.losses[group],
            group=group,
            n_agents=spec.n_agents,
            td_keys=td_keys(group),
            td_squared=weighting_for(type(exp.algorithm)).td_squared,
            generator=torch.Generator(device=spec.device).manual_seed(int(exp.seed)),
            storage=LazyTensorStorage(spec.capacity, device=spec.device),
            batch_size=old._batch_size,
            transform=buffer_transform(old),
        )
