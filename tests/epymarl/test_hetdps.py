"""HetDPS in EPyMARL (the ``hetdps`` wiring): the slot agent, regroupings applied in place."""

from __future__ import annotations

import logging
import re

import pytest
import torch

from hetplug.metrics import scalar_metrics

from .cases import HETDPS, KEY3, slot_agent_matches_host_agent


@pytest.mark.parametrize("use_rnn", [True, False], ids=["gru", "feed_forward"])
def test_slot_agent_with_one_slot_is_the_hosts_rnn_agent(use_rnn):
    """Oracle: PyMARLzoo+'s own RNNAgent (EPyMARL's, in test_real_epymarl.py) on slot 0's
    weights, with use_rnn True (GRUCell) and False (EPyMARL's stock qmix/vdn)."""
    rnn_agent = pytest.importorskip("pymarlzooplus.modules.agents.rnn_agent")
    slot_agent_matches_host_agent(rnn_agent.RNNAgent, use_rnn)


@pytest.mark.parametrize("config", ["qmix", "qmix_feed_forward", "mappo"])
def test_hetdps_regroups_every_interval_and_logs_the_plan(hetdps_runs, config):
    """Also with use_rnn: False (EPyMARL's stock qmix.yaml and vdn.yaml): the feed-forward
    slot agent trains, regroups and logs."""
    session = hetdps_runs[config]
    assert [u for u, _ in session.plans] == list(range(2, session.updates + 1, 2))
    assert all(len(a) == 3 for _, a in session.plans)
    assert {"hetdps/n_groups", "hetdps/mean_distance", "hetdps/cvae_loss"} <= set(session.metrics)
    plugin = session.pm.get_plugin("hetdps")
    assert len(plugin.estimator.pool) > 0  # fed from the collected episodes
    inner = session.learner.inner
    follower = inner.target_mac if config.startswith("qmix") else inner.old_mac
    assert inner.mac.agent.use_rnn == (config != "qmix_feed_forward")
    if config == "qmix_feed_forward":  # grouping_distance {meta: 1.0, observation: 0.5}
        assert {"hetdps/meta/mean_distance", "hetdps/observation/mean_distance"} <= set(session.metrics)
        assert plugin.estimators["observation"].pool.x_dim == session.buffer.scheme["state"]["vshape"]
    routing = torch.tensor(session.plans[-1][1])
    assert torch.equal(inner.mac.agent.routing, routing) and torch.equal(follower.agent.routing, routing)


@pytest.mark.slow
def test_hetdps_groups_reach_the_hosts_logs(host, caplog, tmp_path):
    """Each regrouping is written to the host's console log, and each agent's slot is a
    logged stat (hetplug/hetdps/plan/agent_<i>)."""
    caplog.set_level(logging.INFO)
    hp = {"plugins": ["hetdps"], "hetdps": HETDPS}
    session = host.run("qmix", hp, key=KEY3, t_max=300, learner_log_interval=50)
    lines = [m for m in caplog.messages if m.startswith("hetplug hetdps after update")]
    assert session.plans and len(lines) == len(session.plans)
    for (update, assignment), line in zip(session.plans, lines, strict=True):
        assert re.fullmatch(rf"hetplug hetdps after update {update}: \w+: \d -> \d groups, "
                            rf"agents -> slots \[{', '.join(map(str, assignment))}\] .*", line)  # fmt: skip
    last = session.plans[-1][1]
    metrics = scalar_metrics(session.metrics)
    assert [metrics[f"hetplug/hetdps/plan/agent_{i}"] for i in range(3)] == [float(s) for s in last]
    info = host.info(tmp_path)  # the host's logged stats
    assert [info[f"hetplug/hetdps/plan/agent_{i}"][-1] for i in range(3)] == [float(s) for s in last]


@pytest.mark.parametrize("config", ["qmix", "mappo"])
def test_hetdps_split_is_applied_in_place(hetdps_runs, config):
    """A split copies the shared slot (parameters, Adam moments, target/old mac) and
    reroutes; the optimiser and modules stay the same objects, outputs are unchanged."""
    session = hetdps_runs[config]
    inner = session.learner.inner
    plugin = session.pm.get_plugin("hetdps")
    optimiser = inner.optimiser if config == "qmix" else inner.agent_optimiser
    agent = inner.mac.agent
    follower = (inner.target_mac if config == "qmix" else inner.old_mac).agent
    routing = agent.routing.clone()
    if len(set(routing.tolist())) != 1:  # the run already split them: merge back first
        plugin.slots.apply(plugin.manager.update(torch.zeros(3, 3)))
        routing = agent.routing.clone()
    batch = session.buffer[:2]
    inner.mac.init_hidden(2)
    before = inner.mac.forward(batch, t=3).detach()
    # agents 0 and 1 alike, agent 2 far away: two groups
    plan = plugin.manager.update(torch.tensor([[0.0, 1.0, 50.0], [1.0, 0.0, 50.0], [50.0, 50.0, 0.0]]))
    assert plan.case == "split" and plan.n_groups == 2
    assert plan.assignment[0] == plan.assignment[1] != plan.assignment[2]
    plugin.slots.apply(plan)
    old = int(routing[0])
    new = next(s for s in set(plan.assignment) if s != old)
    assert torch.equal(agent.routing, plan.routing()) and torch.equal(follower.routing, plan.routing())
    for p, t in zip(agent.slot_parameters(), follower.slot_parameters(), strict=True):
        torch.testing.assert_close(p[new], p[old], rtol=0, atol=0)
        torch.testing.assert_close(t[new], t[old], rtol=0, atol=0)  # the target copies its own slot
        state = optimiser.state[p]
        torch.testing.assert_close(state["exp_avg"][new], state["exp_avg"][old], rtol=0, atol=0)
    in_optimiser = {id(q) for g in optimiser.param_groups for q in g["params"]}
    assert all(id(q) in in_optimiser for q in agent.slot_parameters())  # same tensors, not rebuilt
    inner.mac.init_hidden(2)
    torch.testing.assert_close(inner.mac.forward(batch, t=3).detach(), before)


def test_hetdps_needs_the_parameter_shared_rnn_agent(host, capfd):
    host.fails(capfd, r"'hetdps' replaces the parameter-shared rnn agent .* mac='non_shared_mac'",
               "qmix_ns", ["hetdps"], t_max=100)  # fmt: skip
