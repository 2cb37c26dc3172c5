"""LBS in EPyMARL (the ``lbs`` wiring): independent Q-learners on shared experience."""

from __future__ import annotations

import copy

import pytest
import torch

from hetplug_epymarl.updates import q_td_errors, weighted_q_update
from hetplug_epymarl.wiring.lbs import SharedReplay, make_td_fn, mixed_batch

from .cases import params_of, per_agent_rewards


def test_lbs_runs_independent_learners_on_shared_experience(lbs_run):
    session, info = lbs_run
    assert isinstance(session.wiring.replay, SharedReplay)
    assert session.updates == 9 - 4 + 1
    assert {"hetplug/lbs/shared_fraction", "hetplug/lbs/td_selected", "hetplug/lbs/td_large_batch"} <= set(
        info
    )
    shared = [v["value"] if isinstance(v, dict) else v for v in info["hetplug/lbs/shared_fraction"]]
    assert 0 < max(shared) <= 1  # learners trained on the other agent's experience


def test_lbs_mixed_batch_puts_each_item_in_its_learners_column(lbs_run):
    session, _ = lbs_run
    buf = session.buffer
    slot = torch.tensor([[3, 1], [0, 0], [5, 2]])
    agent = torch.tensor([[1, 0], [0, 0], [1, 1]])
    batch, (reward, terminated, filled) = mixed_batch(buf, slot, agent)
    for r in range(3):
        for i in range(2):
            s, k = int(slot[r, i]), int(agent[r, i])
            for key in ("obs", "actions", "avail_actions", "actions_onehot"):
                torch.testing.assert_close(batch[key][r, :, i], buf[key][s, :, k], rtol=0, atol=0)
            torch.testing.assert_close(reward[r, :, i], buf["reward"][s, :, 0], rtol=0, atol=0)
            torch.testing.assert_close(filled[r, :, i], buf["filled"][s, :, 0], rtol=0, atol=0)
    # per-agent rewards (EPyMARL's common_reward=False): column i gets agent k's own reward
    team = buf.data.transition_data["reward"]
    per_agent = per_agent_rewards(buf[:], 2)["reward"]
    buf.data.transition_data["reward"] = per_agent
    try:
        _, (reward, _, _) = mixed_batch(buf, slot, agent)
    finally:
        buf.data.transition_data["reward"] = team
    assert reward.shape == (3, buf.max_seq_length, 2)
    for r in range(3):
        for i in range(2):
            s, k = int(slot[r, i]), int(agent[r, i])
            torch.testing.assert_close(reward[r, :, i], per_agent[s, :, k], rtol=0, atol=0)


@pytest.mark.parametrize("per_agent", [False, True], ids=["team_reward", "per_agent_reward"])
def test_lbs_td_fn_equals_each_learner_on_a_swapped_episode(lbs_run, per_agent):
    """Oracle: learner i's TD on agent k's experience = learner i's TD, through the plain
    (unmixed) path, on a copy of the episode where columns i and k are swapped (rewards
    too, when they are per agent)."""
    session, _ = lbs_run
    buf, learner = session.buffer, session.learner.inner
    sources, slots = torch.tensor([0, 1, 1, 0]), torch.tensor([2, 2, 5, 7])
    team = buf.data.transition_data["reward"]
    if per_agent:
        buf.data.transition_data["reward"] = per_agent_rewards(buf[:], 2)["reward"]
    try:
        _check_td_fn(buf, learner, make_td_fn(buf, learner)(sources, slots), sources, slots, per_agent)
    finally:
        buf.data.transition_data["reward"] = team


def _check_td_fn(buf, learner, td, sources, slots, per_agent: bool) -> None:
    assert td.shape == (2, 4)
    for j in range(4):
        for i in range(2):
            episode = copy.deepcopy(buf[[int(slots[j])]])
            k = int(sources[j])
            for key in ("obs", "actions", "avail_actions", "actions_onehot") + (
                ("reward",) if per_agent else ()
            ):
                v = episode.data.transition_data[key]
                v[:, :, [i, k]] = v[:, :, [k, i]].clone()
            episode = episode[:, : int(episode.max_t_filled())]
            ref, mask = q_td_errors(learner, episode)
            expected = ref[0, :, i].abs().sum() / mask[0, :, i].sum()
            torch.testing.assert_close(td[i, j], expected)


def test_lbs_weights_enter_each_learners_loss(lbs_run, learner_copies):
    """Weight 0 on learner 1's item in row 0: changing that item's reward moves nothing."""
    session, _ = lbs_run
    slot, agent = torch.tensor([[0, 1], [2, 3]]), torch.tensor([[0, 0], [1, 1]])

    def update(weights, bump):
        _, learner = learner_copies(session)
        learner.args.standardise_rewards = False
        batch, (r, d, f) = mixed_batch(session.buffer, slot, agent)
        r = r.clone()
        r[0, :, 1] += bump
        weighted_q_update(learner, batch, torch.tensor(weights), 0, (r, d, f))
        return params_of(learner)

    zero = [[1.0, 0.0], [1.0, 1.0]]  # [B, N]
    for a, b in zip(update(zero, 0.0), update(zero, 3.0), strict=True):
        torch.testing.assert_close(a, b)
    one = [[1.0, 1.0], [1.0, 1.0]]
    assert any(not torch.equal(a, b) for a, b in zip(update(one, 0.0), update(one, 3.0), strict=True))


def test_lbs_keeps_the_hosts_one_team_reward_statistic(lbs_run, learner_copies, pymarlzoo):
    """Team rewards (EPyMARL's common_reward=True; PyMARLzoo+ has no other kind) are
    standardised by the host with one scalar running statistic, ``rew_ms`` of shape (1,).
    LBS's per-column rewards ``[R, T, N]`` update it as samples of that one team reward
    (they used to turn it, for good, into a per-column statistic of shape (N,))."""
    session, _ = lbs_run
    inner = session.learner.inner
    assert inner.args.standardise_rewards and tuple(inner.rew_ms.mean.shape) == (1,)
    _, learner = learner_copies(session)
    reference = pymarlzoo.running_mean_std((1,))  # the host's class, fed as the host would be
    reference.mean, reference.var = learner.rew_ms.mean.clone(), learner.rew_ms.var.clone()
    reference.count = learner.rew_ms.count
    batch, steps = mixed_batch(session.buffer, torch.tensor([[0, 1], [2, 3]]), torch.tensor([[1, 0], [1, 1]]))
    weighted_q_update(learner, batch, torch.ones(2, 2), 0, steps)
    reference.update(steps[0][:, :-1].reshape(-1, 1))
    assert tuple(learner.rew_ms.mean.shape) == (1,)
    torch.testing.assert_close(learner.rew_ms.mean, reference.mean)
    torch.testing.assert_close(learner.rew_ms.var, reference.var)


def test_lbs_needs_independent_q_learners(host, capfd):
    host.fails(
        capfd,
        "'lbs' shares experience between independent Q-learners .* mixer='qmix'",
        "qmix",
        ["lbs"],
        t_max=100,
    )
