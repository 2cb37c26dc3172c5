"""SHEP's wiring: positions in, intrinsic rewards and relabelled trajectories back.

Needs from BenchMARL: where each group's positions are (``positions``, default
``observation[..., 0:2]`` for the ``shep`` plugin: VMAS observations start with the
position) and, optionally, an opponent group's (``opponents``).

Installs, every iteration, for any plugin's ``CollectedResult`` (SHEP's or a third-party
plugin's):

* intrinsic rewards ``[B, T]``, added in place to the collected batch's reward (per
  agent: the same bonus for each), so the group trains on them;
* relabelled trajectories (Group-HER), turned into BenchMARL transitions: each copy's
  episode taken from the collected batch (``extra["hetplug_row"]``/``["hetplug_step"]``),
  with the relabelled reward and ``done``, then BenchMARL's own ``process_batch`` (for
  on-policy algorithms, their advantages). The replay wiring stores them after the
  originals.
"""

from __future__ import annotations

import pluggy

import hetplug
from hetplug_benchmarl.batch import reward_key
from hetplug_benchmarl.positions import VMAS_POSITIONS, batch_spec, check_opponents, check_source
from hetplug_benchmarl.wiring import GroupRun, Wiring


class SHEPWiring(Wiring):
    def __init__(self, config: hetplug.HetplugConfig, pm: pluggy.PluginManager) -> None:
        self.config = config
        uses_shep = "shep" in config.plugins
        self.positions = config.positions or (VMAS_POSITIONS if uses_shep else None)
        self.opponents = config.opponents
        self.her_fraction = 0.0
        if uses_shep:
            from hetplug.shep import SHEPConfig

            shep = SHEPConfig(**config.options.get("shep", {}))
            self.her_fraction = shep.her_max_fraction if shep.group_her else 0.0

    def check(self, exp, group: str) -> None:
        if self.positions is not None:
            check_source(batch_spec(exp), group, self.positions, "positions")
        if self.opponents is not None:
            check_opponents(exp, self.opponents)

    def spec(self, exp, group: str, spec: hetplug.HostSpec) -> hetplug.HostSpec:
        if not exp.on_policy or not self.her_fraction:
            return spec
        envs = exp.config.n_envs_per_worker(True)  # room in each rollout for its copies
        return hetplug.HostSpec(
            **{**spec.__dict__, "capacity": spec.capacity + int(self.her_fraction * envs)}
        )

    def install(self, exp, run: GroupRun) -> None:
        run.positions = self.positions
        run.opponents = self.opponents

    def collected(self, exp, batch, run: GroupRun) -> None:
        intrinsic = None
        for res in run.results:
            if res.intrinsic_reward is not None:
                intrinsic = res.intrinsic_reward if intrinsic is None else intrinsic + res.intrinsic_reward
        base = run.collected
        if intrinsic is not None:
            key = reward_key(batch.keys(include_nested=True), run.group)
            reward = batch.get(key)
            bonus = intrinsic.reshape(*intrinsic.shape, *([1] * (reward.dim() - 2)))
            batch.set(
                key, reward + bonus.to(reward.dtype)
            )  # a new tensor: the collected views keep the env reward
            tb = run.collected
            run.collected = tb.replace(
                reward=tb.reward + intrinsic.reshape(*intrinsic.shape, *([1] * (tb.reward.dim() - 2)))
            )
            valid = tb.mask.to(intrinsic.dtype)  # what every plugin's bonus added, per valid step
            run.values["intrinsic_reward"] = (intrinsic * valid).sum() / valid.sum().clamp_min(1)
        if run.stores_copies:  # a replay wiring stores them after the originals
            run.copies = [
                (
                    res.extra_trajectories,
                    self._transitions(exp, batch, run.group, base, res.extra_trajectories),
                )
                for res in run.results
                if res.extra_trajectories is not None
            ]

    @staticmethod
    def _transitions(exp, batch, group: str, base: hetplug.TrajectoryBatch, her: hetplug.TrajectoryBatch):
        """Relabelled copies as BenchMARL transitions ``[B' * T]``: each copy's source steps
        of the collected batch (its episode, intrinsic reward included), plus what
        relabelling added to the reward, ``done`` at its end, then BenchMARL's
        ``process_batch``."""
        rows = her.extra["hetplug_row"].to(batch.device)
        steps = her.extra["hetplug_step"].to(batch.device)
        raw = batch[rows, steps].exclude(*exp._get_excluded_keys(group)).to(exp.config.train_device)
        keys = raw.keys(include_nested=True)
        key = reward_key(keys, group)
        source = base.reward[rows.to(base.reward.device), steps.to(base.reward.device)]
        bonus = (her.reward - source).to(raw.device)
        reward = raw.get(key)
        raw.set(
            key, reward + bonus.reshape(*bonus.shape, *([1] * (reward.dim() - bonus.dim()))).to(reward.dtype)
        )
        done = her.done.to(raw.device)
        for name in (
            ("next", group, "done"),
            ("next", group, "terminated"),
            ("next", "done"),
            ("next", "terminated"),
        ):
            if name in keys:
                value = raw.get(name)
                mark = done.reshape(*done.shape, *([1] * (value.dim() - 2))).expand_as(value)
                raw.set(name, mark.to(value.dtype).clone())  # the copy's own done: at its end
        raw = exp.algorithm.process_batch(group, raw)
        return raw if exp.algorithm.has_rnn else raw.reshape(-1)
