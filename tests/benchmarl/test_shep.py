"""SHEP's wiring in real BenchMARL runs: intrinsic rewards and Group-HER copies."""

from __future__ import annotations

import torch

import hetplug_benchmarl
from hetplug_benchmarl.replay import SLOT_KEY, STEP_KEY

from .conftest import ENVS, HER, STEPS


def test_shep_intrinsic_reward_reaches_the_buffer(experiment):
    exp = experiment("iql", iters=1)
    cb = hetplug_benchmarl.wrap(exp, ["shep"], shep={"intrinsic_reward": True})
    seen = {}

    class Spy(hetplug_benchmarl.HetplugCallback.__mro__[1]):  # benchmarl Callback
        def on_batch_collected(self, batch):
            seen["env"] = batch["next", "agents", "reward"].clone()

    spy = Spy()
    spy.experiment = exp
    exp.callbacks.insert(0, spy)  # runs before hetplug adds the bonus
    exp.run()
    stored = exp.replay_buffers["agents"].storage[:]["next", "agents", "reward"]
    bonus = stored - seen["env"].reshape(stored.shape)
    assert bonus.abs().max() > 0
    # one bonus per (env, step), shared by the agents
    assert torch.allclose(bonus, bonus[..., :1, :].expand_as(bonus))
    assert "hetplug/shep/intrinsic_reward" in cb.metrics("agents")


def test_group_her_copies_are_stored_after_the_originals(experiment):
    """Every step qualifies (threshold below any Moran's I): each env's segment gets one
    copy, cut after its first 3 steps, with the HER reward at step 2 and done there."""
    exp = experiment("iql", iters=1)
    cb = hetplug_benchmarl.wrap(exp, ["shep"], shep=HER)
    exp.run()
    buf = exp.replay_buffers["agents"]
    layout = buf._writer.layout
    assert cb.priorities("agents").numel() == 2 * ENVS
    assert (
        layout.length[:ENVS].tolist() == [STEPS] * ENVS
        and layout.length[ENVS : 2 * ENVS].tolist() == [3] * ENVS
    )
    original = buf.storage.get(layout.rows(torch.tensor([0])))  # env 0, T steps
    copy = buf.storage.get(layout.rows(torch.tensor([ENVS])))  # its copy
    key = ("next", "agents", "reward")
    bonus = copy.get(key) - original.get(key)
    torch.testing.assert_close(bonus[2], torch.ones_like(bonus[2]))
    torch.testing.assert_close(bonus[:2], torch.zeros_like(bonus[:2]))
    assert copy.get(("next", "agents", "done"))[2].all()
    torch.testing.assert_close(copy.get(("agents", "observation")), original.get(("agents", "observation")))
    data = buf.sample()
    assert (data[STEP_KEY] < layout.length[data[SLOT_KEY]]).all()  # never past a copy's end


def test_group_her_on_policy_copies_get_their_own_advantages(experiment):
    exp = experiment(on_policy="mappo", iters=2)
    cb = hetplug_benchmarl.wrap(exp, ["shep"], shep=HER)
    exp.run()
    buf = exp.replay_buffers["agents"]
    layout = buf._writer.layout
    assert cb.priorities("agents").numel() == 2 * ENVS  # this rollout and its copies only
    assert len(buf) == 2 * ENVS * STEPS
    adv = ("agents", "advantage")
    original, copy = (
        buf.storage.get(layout.rows(torch.tensor([0]))),
        buf.storage.get(layout.rows(torch.tensor([ENVS]))),
    )
    assert not torch.allclose(original.get(adv)[:3], copy.get(adv)[:3])  # relabelled reward and done
