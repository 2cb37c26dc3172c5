"""The weighted updates against the host's own learners (the oracles): with all weights 1
they are the host's ``train``, parameter for parameter; a weight 0 removes an episode."""

from __future__ import annotations

import copy
import types

import pytest
import torch

from hetplug_epymarl.updates import check_host_learner, weighted_ppo_update, weighted_q_update

from .cases import params_of, per_agent_rewards


@pytest.mark.parametrize(
    "case", [("qmix", "per"), ("vdn", "shep"), ("iql", "per")], ids=["qmix", "vdn", "iql"]
)
@pytest.mark.parametrize("variant", ["default", "no_double_q", "standardise_returns"])
def test_unit_weights_give_the_hosts_own_update(runs, twin_learners, case, variant):
    """Oracle: the host's QLearner.train. With all weights 1 the adapter's update gives the
    same parameters, targets (hard update inside the loop) and TD errors."""
    session, _ = runs[case]
    host, mine = twin_learners(session, variant)
    for learner in (host, mine):
        learner.args.prioritized_buffer = True  # the host then returns its masked TD^2
        learner.args.double_q = variant != "no_double_q"
    buf = session.buffer
    start = host.training_steps
    for step, rows in enumerate(([0, 1, 2, 3], [4, 5, 6, 7], [1, 3, 5, 8])):
        batch = buf[torch.tensor(rows).numpy()]
        td2 = host.train(batch, t_env=step, episode_num=step)
        td, mask = weighted_q_update(mine, batch, torch.ones(len(rows)), t_env=step)
        torch.testing.assert_close(td**2, td2.reshape(td.shape))
        assert mask.shape == td.shape[:2]
        for a, b in zip(params_of(host), params_of(mine), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert host.training_steps == mine.training_steps == start + 3


@pytest.mark.parametrize("variant", ["default", "standardise_returns"])
def test_unit_weights_give_the_hosts_own_ppo_update(runs, twin_learners, variant):
    """Oracle: the host's PPOLearner.train (4 epochs, clipped policy loss, n-step critic)."""
    session, _ = runs["mappo", "shep"]
    host, mine = twin_learners(session, variant)
    buf = session.buffer
    start = host.critic_training_steps
    for step, rows in enumerate(([0, 1, 2, 3], [3, 2, 1, 0], [1, 1, 2, 3])):
        batch = buf[torch.tensor(rows).numpy()]
        host.train(batch, t_env=step, episode_num=step)
        td, mask = weighted_ppo_update(mine, batch, torch.ones(len(rows)), t_env=step)
        assert td.shape == (*mask.shape, host.n_agents)
        for a, b in zip(params_of(host), params_of(mine), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert host.critic_training_steps == mine.critic_training_steps == start + 3


@pytest.mark.parametrize(
    "case", [("iql", "per"), ("mappo", "shep"), ("ippo", "per")], ids=["iql", "mappo", "ippo"]
)
@pytest.mark.parametrize("standardise", [False, True], ids=["raw", "standardise_rewards"])
def test_per_agent_rewards_give_the_hosts_own_update(runs, twin_learners, pymarlzoo, case, standardise):
    """EPyMARL's ``common_reward=False`` (``[B, T, N]`` rewards, one per agent) for the
    independent and actor-critic learners. Oracle: the host's own ``train`` on the same batch."""
    session, _ = runs[case]
    host, mine = twin_learners(session, "default")
    n = host.args.n_agents
    for learner in (host, mine):
        learner.args.standardise_rewards = standardise
        learner.rew_ms = pymarlzoo.running_mean_std((n,))
    on_policy = case[0] != "iql"
    if not on_policy:
        for learner in (host, mine):
            learner.args.prioritized_buffer = True
    buf = session.buffer
    for step, rows in enumerate(([0, 1, 2, 3], [3, 2, 1, 0])):
        batch = per_agent_rewards(buf[torch.tensor(rows).numpy()], n)
        assert batch["reward"].shape[-1] == n and not torch.equal(
            batch["reward"][..., 0], batch["reward"][..., 1]
        )
        out = host.train(batch, t_env=step, episode_num=step)
        update = weighted_ppo_update if on_policy else weighted_q_update
        td, _ = update(mine, batch, torch.ones(len(rows)), t_env=step)
        if not on_policy:
            torch.testing.assert_close(td**2, out.reshape(td.shape))
        for a, b in zip(params_of(host), params_of(mine), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    if standardise:
        torch.testing.assert_close(host.rew_ms.mean, mine.rew_ms.mean)
        assert host.rew_ms.mean.shape == (n,)


@pytest.mark.parametrize("case", [("qmix", "per"), ("mappo", "shep")], ids=["qmix", "mappo"])
def test_a_host_learner_without_what_the_update_reads_is_refused(runs, learner_copies, case):
    """Another EPyMARL version's learner fails when built, naming what it lacks; the
    learners of this host pass the same check."""
    session, _ = runs[case]
    kind = "ppo" if case[0] == "mappo" else "q"
    check_host_learner(session.learner.inner, kind)
    learner, _ = learner_copies(session)
    del learner.last_target_update_step
    learner.args = types.SimpleNamespace(**{k: v for k, v in vars(learner.args).items() if k != "gamma"})
    learner.args.standardise_rewards = True
    learner.__dict__.pop("rew_ms", None)
    with pytest.raises(ValueError, match=r"has no last_target_update_step, rew_ms, args\.gamma;"):
        check_host_learner(learner, kind)


@pytest.mark.parametrize(
    "case", [("qmix", "per"), ("iql", "per"), ("mappo", "shep")], ids=["qmix", "iql", "mappo"]
)
def test_is_weights_enter_the_loss(runs, learner_copies, case):
    """An episode with weight 0 cannot move the update: changing its rewards changes
    nothing; with weight 1 it does."""
    session, _ = runs[case]
    buf = session.buffer
    ids = torch.tensor([0, 1, 2, 3]).numpy()

    def update(weights, bump):
        _, learner = learner_copies(session)
        learner.args.standardise_rewards = False  # its running stats see every reward
        batch = buf[ids]
        batch = copy.deepcopy(batch)
        batch.data.transition_data["reward"][3] += bump
        update = weighted_ppo_update if case[0] == "mappo" else weighted_q_update
        update(learner, batch, torch.tensor(weights), t_env=0)
        return params_of(learner)

    zero = [1.0, 0.5, 1.0, 0.0]
    for a, b in zip(update(zero, 0.0), update(zero, 5.0), strict=True):
        torch.testing.assert_close(a, b)
    one = [1.0, 0.5, 1.0, 1.0]
    assert any(not torch.equal(a, b) for a, b in zip(update(one, 0.0), update(one, 5.0), strict=True))
