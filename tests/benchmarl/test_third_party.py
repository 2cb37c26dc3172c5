"""A plugin written outside hetplug, installed by entry point, runs in BenchMARL exactly as
a built-in does: no adapter names it (tests/conftest.py installs ``toy`` and ``toy_replay``)."""

from __future__ import annotations

import pytest
import torch
from benchmarl.experiment import Callback

import hetplug_benchmarl
from hetplug_benchmarl.replay.buffer import HetplugReplayBuffer

from .conftest import ENVS, ITERS, STEPS


class RewardSpy(Callback):
    def on_batch_collected(self, batch):
        self.reward = batch["next", "agents", "reward"].clone()


@pytest.mark.parametrize("on_policy", [False, "mappo"], ids=["iql", "mappo"])
def test_entry_point_plugins_get_the_built_in_wiring(experiment, installed_toy_plugins, on_policy):
    exp = experiment("iql", on_policy=on_policy)
    cb = hetplug_benchmarl.wrap(exp, {"plugins": ["toy_replay", "toy"], "toy": {"scale": 0.5}})
    spy = RewardSpy()
    spy.experiment = exp
    exp.callbacks.insert(0, spy)  # sees the reward before hetplug adds the bonus
    exp.run()
    pm = cb.plugin_manager("agents")
    replay, toy = pm.get_plugin("toy_replay"), pm.get_plugin("toy")
    # the prioritiser got hetplug's trajectory buffer and the TD (or advantage) feedback
    assert isinstance(exp.replay_buffers["agents"], HetplugReplayBuffer)
    assert replay.updates == (ITERS if on_policy else 2 * ITERS)
    stored = len(replay.sampler)
    assert stored == (ENVS if on_policy else ITERS * ENVS)  # one rollout kept on-policy
    # every hook reached the other plugin, bind included
    assert toy.calls[:3] == ["configure", "bind", "collected"] and toy.calls.count("auxiliary") == ITERS
    assert toy.host is not None and toy.host.latent_net is None and toy.host.parameter_slots is None
    assert cb.history["hetplug/toy/update"] == [1.0, 2.0, 3.0]
    assert cb.history["hetplug/toy/loss"] == [0.5, 1.0, 1.5]
    assert cb.history["hetplug/toy_replay/updates"][-1] == replay.updates
    assert set(cb.history["hetplug/intrinsic_reward"]) == {0.5}  # toy's bonus, same name as in EPyMARL
    # its intrinsic reward reached what BenchMARL trained on
    data = exp.replay_buffers["agents"].storage.get(torch.arange(ENVS * STEPS))
    if not on_policy:  # the last iteration's rows are the ring's last ENVS slots
        data = exp.replay_buffers["agents"].storage.get(
            torch.arange((ITERS - 1) * ENVS * STEPS, ITERS * ENVS * STEPS)
        )
    torch.testing.assert_close(
        data["next", "agents", "reward"], spy.reward.reshape(data["next", "agents", "reward"].shape) + 0.5
    )
