"""SHEP's wiring in real BenchMARL runs: intrinsic rewards and Group-HER copies."""

from __future__ import annotations

import pytest
import torch
from benchmarl.experiment import Callback

import hetplug_benchmarl
from hetplug_benchmarl.replay import SLOT_KEY, STEP_KEY

from .conftest import ENVS, HER, ITERS, STEPS


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
    assert {"hetplug/shep/intrinsic_reward", "hetplug/intrinsic_reward"} <= set(cb.metrics("agents"))


def _record_copies(cb):
    """Keep every Group-HER batch the shep plugin returns (the oracle for what is stored)."""
    plugin = cb.plugin_manager("agents").get_plugin("shep")
    made, original = [], plugin._group_her

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        made.append(out)
        return out

    plugin._group_her = spy
    return made


def test_group_her_copies_are_stored_after_the_originals(experiment):
    """Every step qualifies (threshold below any Moran's I): each env's segment gets one
    copy, stored after the originals: its episode's steps from the collected batch, cut
    at the segment the plugin chose, with the HER reward and done at the cut."""
    exp = experiment("iql", iters=1)
    cb = hetplug_benchmarl.wrap(exp, ["shep"], shep={**HER, "her_reward_relative": False})
    made = _record_copies(cb)
    exp.run()
    (her,) = made
    buf = exp.replay_buffers["agents"]
    layout = buf._writer.layout
    assert cb.priorities("agents").numel() == 2 * ENVS and her.batch_size == ENVS
    lengths = her.mask.sum(-1)
    assert layout.length[:ENVS].tolist() == [STEPS] * ENVS
    assert layout.length[ENVS : 2 * ENVS].tolist() == lengths.tolist()
    key = ("next", "agents", "reward")
    for i in range(ENVS):
        row, steps = int(her.extra["hetplug_row"][i, 0]), her.extra["hetplug_step"][i]
        original = buf.storage.get(layout.rows(torch.tensor([row])))  # env `row`, T steps
        copy = buf.storage.get(layout.rows(torch.tensor([ENVS + i])))
        n = int(lengths[i])
        torch.testing.assert_close(
            copy.get(("agents", "observation"))[:n], original.get(("agents", "observation"))[steps[:n]]
        )
        bonus = copy.get(key)[:n] - original.get(key)[steps[:n]]
        torch.testing.assert_close(bonus[n - 1], torch.ones_like(bonus[n - 1]))  # her_reward 1.0 at the cut
        torch.testing.assert_close(bonus[: n - 1], torch.zeros_like(bonus[: n - 1]))
        done = copy.get(("next", "agents", "done"))[:n]
        assert done[n - 1].all() and not done[: n - 1].any()
    data = buf.sample()
    assert (data[STEP_KEY] < layout.length[data[SLOT_KEY]]).all()  # never past a copy's end
    # The storage's valid steps are the ones SHEP kept at add, so priority updates pass no
    # mask (SHEPPlugin.keeps_valid_steps) and still count only the copies' valid steps.
    plugin = cb.plugin_manager("agents").get_plugin("shep")
    slots = torch.arange(2 * ENVS)
    steps = torch.arange(layout.steps)
    torch.testing.assert_close(plugin._mask[slots], steps < layout.length[slots].unsqueeze(1))
    assert not buf._sampler.pass_mask


def test_group_her_on_policy_copies_get_their_own_advantages(experiment):
    exp = experiment(on_policy="mappo", iters=2)
    cb = hetplug_benchmarl.wrap(exp, ["shep"], shep=HER)
    exp.run()
    buf = exp.replay_buffers["agents"]
    layout = buf._writer.layout
    assert cb.priorities("agents").numel() == 2 * ENVS  # this rollout and its copies only
    assert len(buf) == 2 * ENVS * STEPS
    adv = ("agents", "advantage")
    copy = buf.storage.get(layout.rows(torch.tensor([ENVS])))
    n = int(layout.length[ENVS])
    source = buf.storage.get(layout.rows(torch.tensor([0])))  # rows are replaced each rollout
    assert n < STEPS and torch.isfinite(copy.get(adv)[:n]).all()
    # the copy's advantages are its own (relabelled reward and done at its end), not the original's
    assert not any(torch.allclose(copy.get(adv)[:n], buf.storage.get(layout.rows(torch.tensor([r]))).get(adv)[:n])
                   for r in range(ENVS))  # fmt: skip
    del source


@pytest.mark.parametrize("plugin", ["per", "shep"])
def test_is_exponent_is_one_at_the_end_of_a_real_run(experiment, plugin):
    """BenchMARL tells the plugins the run's length (max_n_frames): beta reaches 1."""
    exp = experiment("iql")
    cb = hetplug_benchmarl.wrap(exp, [plugin])
    exp.run()
    sampler = cb.plugin_manager("agents").get_plugin(plugin).sampler
    assert cb.groups["agents"].spec.total_env_steps == ITERS * ENVS * STEPS
    assert sampler.beta == pytest.approx(1.0)


def test_rows_holding_several_episodes_are_scored_per_episode(experiment):
    """Episodes of 10 steps in rows of 25: the host passes each env's done, so SHEP's
    Delta E restarts at every episode (intrinsic reward = eta_t I(t) at an episode's first
    step), Group-HER copies stay inside one episode, and every sampled step lies in the
    episode the plugin drew."""
    exp = experiment("iql", iters=2, max_steps=10)
    cb = hetplug_benchmarl.wrap(exp, ["shep"], shep={**HER, "intrinsic_delta_coef": [0.5, 0.5],
                                                    "intrinsic_moran_coef": [0.25, 0.25]})  # fmt: skip
    plugin = cb.plugin_manager("agents").get_plugin("shep")
    seen = []

    class AfterHetplug(Callback):  # runs after hetplug's callback: sees what it handed SHEP
        def on_batch_collected(self, batch):
            run = cb.groups["agents"]
            seen.append((run.collected, next(r for r in run.results if r.extra_trajectories is not None)))

    after = AfterHetplug()
    after.experiment = exp
    exp.callbacks.append(after)
    exp.run()
    batch, res = seen[0]
    assert batch.done.sum() >= ENVS * 2  # episodes end inside the rows
    desc, _, start = plugin._descriptors(batch)
    starts = start == torch.arange(batch.max_steps)
    torch.testing.assert_close(res.intrinsic_reward[starts], 0.25 * desc.moran[starts])
    her = res.extra_trajectories
    for i in range(her.batch_size):  # a copy's steps come from one episode, no done before its end
        steps = her.extra["hetplug_step"][i][her.mask[i]]
        row = int(her.extra["hetplug_row"][i, 0])
        assert not batch.done[row, steps[:-1]].any() and (start[row, steps] == start[row, steps[0]]).all()
