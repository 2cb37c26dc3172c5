"""Prioritised replay in EPyMARL (the ``per`` wiring, serving ``per`` and ``shep``):
per-episode priorities, IS weights, what is refused."""

from __future__ import annotations

import pytest
import torch

from hetplug_epymarl.wiring.per import PrioritisedReplay

from .conftest import CASES


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_priorities_are_per_episode_and_change(runs, case):
    session, _ = runs[case]
    p = session.priorities()
    episodes = 9  # 400 steps / 50 + 1 (the host's loop runs while t_env <= t_max)
    assert p.numel() == session.buffer.episodes_in_buffer == min(episodes, session.buffer.buffer_size)
    assert session.updates == episodes - 4 + 1  # training starts once batch_size=4 episodes are stored
    # Updated priorities are |TD|-driven: not all equal to the initial max priority.
    assert torch.unique(p).numel() > 2
    assert session.pm.get_plugin(case[1]).sampler._sample_calls == session.updates


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_metrics_reach_the_hosts_logger(runs, case):
    _, info = runs[case]
    method = case[1]
    assert f"hetplug/{method}/priority_mean" in info and f"hetplug/{method}/stored" in info
    if method == "shep":
        for name in ("moran_i", "occupancy_entropy", "action_diversity"):
            assert f"hetplug/shep/{name}" in info
        assert "hetplug/intrinsic_reward" in info


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_is_exponent_is_one_at_the_end_of_the_run(runs, case):
    """t_max reaches the plugins as HostSpec.total_env_steps, so PER's and SHEP's IS
    exponent rises from is_beta (0.4) to 1 over the run without any setting: the run's
    last update drew its weights with beta = 1 (beta moves only when episodes are
    collected, before they are sampled). SHEP logs the way up."""
    session, info = runs[case]
    plugin = session.pm.get_plugin(case[1])
    assert session.spec.total_env_steps == 400 and plugin.config.is_beta_steps == 0
    assert plugin.sampler.beta == 1.0
    if case[1] == "shep":
        logged = [v["value"] if isinstance(v, dict) else v for v in info["hetplug/shep/is_beta"]]
        assert logged[0] < 1.0 and logged[-1] == 1.0 and logged == sorted(logged)


def test_sampled_weights_follow_the_plugins_closed_form(runs):
    session, _ = runs["qmix", "per"]
    replay = session.wiring.replay
    assert isinstance(replay, PrioritisedReplay)
    sampler = session.pm.get_plugin("per").sampler
    session.buffer.sample(4)
    res = replay.take_sample(4)
    p = sampler.probabilities()[res.indices]
    n = len(sampler)
    beta = sampler.beta
    p_min = sampler.probabilities().min()
    torch.testing.assert_close(res.weights, ((n * p) ** -beta / (n * p_min) ** -beta).to(res.weights.dtype))


def test_other_learners_with_a_prioritiser_are_refused(host, capfd):
    host.fails(capfd, "needs the Q-learner .* learner='coma_learner'", "coma", ["per"], t_max=100)


def test_host_prioritized_buffer_and_hetplug_are_exclusive(host, capfd):
    host.fails(capfd, "prioritized_buffer=True", "qmix", ["per"], t_max=100, prioritized_buffer=True)
