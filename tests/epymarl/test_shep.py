"""SHEP in EPyMARL (the ``shep`` wiring): positions from observation slices, the intrinsic
reward in the stored reward, Group-HER's copies stored as episodes."""

from __future__ import annotations

import copy

import torch

from .cases import per_agent_rewards, shep

HER = {
    "group_her": True,
    "her_moran_threshold": -2.0,
    "her_min_length": 3,
    "her_max_fraction": 1.0,
    "her_reward": 1.0,
    "her_reward_relative": False,
}


def test_shep_reads_the_configured_position_slice(runs):
    session, _ = runs["qmix", "shep"]
    buf = session.buffer
    tb = session.wiring.collection.trajectory_batch(buf[:2])
    torch.testing.assert_close(tb.positions, buf[:2]["obs"][..., 9:11].float(), rtol=0, atol=0)
    assert tb.positions.shape == (2, buf.max_seq_length, 2, 2)


def test_intrinsic_reward_is_added_to_the_stored_reward(runs):
    """The bonus SHEP returns for a batch is added to exactly that batch's reward."""
    session, _ = runs["vdn", "shep"]
    batch = copy.deepcopy(session.buffer[:3])  # slices are views of the buffer
    before = batch["reward"].clone()
    plugin = session.pm.get_plugin("shep")
    steps = plugin.env_steps
    tb, copies = session.wiring.collection.collected(batch)  # adds in place
    assert copies == []  # group_her is off
    bonus = batch["reward"] - before
    plugin.env_steps = steps
    assert bonus.abs().sum() > 0
    torch.testing.assert_close(tb.reward, batch["reward"].squeeze(-1))


def test_group_her_copies_are_stored_beside_the_originals(host):
    """Every step qualifies (threshold below any Moran's I): each episode gets one copy,
    stored right after it: the episode cut at the segment SHEP chose (largest advantage
    gain), with the HER reward and termination there."""
    session = host.run("qmix", shep(**HER, intrinsic_reward=False), t_max=200, buffer_size=32)
    episodes = 5  # 200 / 50 + 1
    assert session.buffer.episodes_in_buffer == len(session.priorities()) == 2 * episodes
    original, copy_ = session.buffer[0:1], session.buffer[1:2]  # episode 0 and its copy
    end = int(copy_["filled"][0, :, 0].sum()) - 1  # the segment's end
    assert 2 <= end < session.buffer.max_seq_length - 1
    torch.testing.assert_close(copy_["obs"], original["obs"], rtol=0, atol=0)
    assert copy_["filled"][0, : end + 1].all() and not copy_["filled"][0, end + 1 :].any()
    assert copy_["terminated"][0, end] == 1 and not copy_["terminated"][0, :end].any()
    bonus = copy_["reward"] - original["reward"]
    torch.testing.assert_close(bonus[0, end], torch.ones(1))
    torch.testing.assert_close(bonus[0, :end], torch.zeros(end, 1))


def test_per_agent_rewards_get_the_intrinsic_and_her_rewards(host):
    """With ``[B, T, N]`` rewards (EPyMARL's ``common_reward=False``) every agent's reward
    gets the same SHEP bonus, and a Group-HER copy gets the HER reward in every column."""
    session = host.run("iql", shep(**HER), t_max=100, buffer_size=32)
    n = session.spec.n_agents
    batch = per_agent_rewards(session.buffer[torch.tensor([0, 2]).numpy()], n)  # two originals
    before = batch["reward"].clone()
    tb, copies = session.wiring.collection.collected(batch)
    bonus = batch["reward"] - before
    assert bonus.shape == (2, batch.max_seq_length, n) and bonus.abs().sum() > 0
    torch.testing.assert_close(bonus, bonus[..., :1].expand_as(bonus))  # one team bonus
    torch.testing.assert_close(tb.reward, batch["reward"])
    [(copy_batch, her_tb)] = copies
    rows = her_tb.extra["hetplug_row"][:, 0]
    assert copy_batch["reward"].shape == (len(rows), batch.max_seq_length, n)
    her_bonus = copy_batch["reward"] - batch["reward"][rows]
    for i in range(len(rows)):  # the HER reward in every column at the copy's end, nothing before
        end = int(her_tb.mask[i].sum()) - 1
        torch.testing.assert_close(her_bonus[i, end], torch.ones(n))
        torch.testing.assert_close(her_bonus[i, :end], torch.zeros(end, n))
