"""HAPPO in EPyMARL (``learner: hetplug_happo``, registered by ``install()``): the host's PPO
update at one agent, the M factor against a brute-force product, the order, shared and
per-agent networks, and short real runs on PyMARLzoo+."""

from __future__ import annotations

import copy
import types

import pytest
import torch

import hetplug_epymarl
from hetplug_epymarl.happo import NAME

from .cases import KEY3, ON_POLICY, params_of

ONE_AGENT = "rware:rware-tiny-1ag-v2"  # its observation does not list other agents


def happo_run(pymarlzoo, root, config="mappo", key=KEY3, hetplug=None, t_max=200):
    """A short run with ``learner: hetplug_happo``; returns ``(learner, info.json)`` (the
    learner records the batches it trained on)."""
    with pymarlzoo.inside(root):
        registry = hetplug_epymarl.install("pymarlzooplus").learners
        made = []

        class Recording(registry[NAME]):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.batches = []
                made.append(self)

            def train(self, batch, *args, **kwargs):
                self.batches.append(batch)
                return super().train(batch, *args, **kwargs)

        original = registry[NAME]
        registry[NAME] = Recording
        try:
            pymarlzoo.run(config, hetplug, t_max=t_max, key=key, learner=NAME, **ON_POLICY["mappo"])
        finally:
            registry[NAME] = original
        return made[-1], pymarlzoo.info(root)


@pytest.fixture(scope="module")
def shared_run(pymarlzoo, tmp_path_factory):
    """HAPPO (share) on three lbforaging agents."""
    return happo_run(pymarlzoo, tmp_path_factory.mktemp("happo_shared"))


def silent_copy(learner):
    """A deep copy of a host learner with a silent logger."""
    learner.mac.init_hidden(1)
    learner.old_mac.init_hidden(1)
    logger, learner.logger = learner.logger, types.SimpleNamespace(log_stat=lambda *a, **k: None)
    owner, learner.mac.learner = getattr(learner.mac, "learner", None), None
    try:
        return copy.deepcopy(learner)
    finally:
        learner.logger, learner.mac.learner = logger, owner


def snapshots(learner) -> list[dict[str, torch.Tensor]]:
    """Instrument ``learner``'s actor optimiser: the agent parameters before its first step
    and after every step (a list filled by later ``train`` calls)."""
    shots = [{k: v.detach().clone() for k, v in learner.mac.agent.state_dict().items()}]
    step = learner.agent_optimiser.step

    def recorded(*args, **kwargs):
        out = step(*args, **kwargs)
        shots.append({k: v.detach().clone() for k, v in learner.mac.agent.state_dict().items()})
        return out

    learner.agent_optimiser.step = recorded
    return shots


def taken_probs(mac, state, batch) -> torch.Tensor:
    """``pi(a_t|o_t) [B, T-1, N]`` of ``mac`` with agent parameters ``state``, step by step."""
    mac.init_hidden(1)  # no hidden state holding a graph in the copy
    owner, mac.learner = getattr(mac, "learner", None), None
    try:
        probe = copy.deepcopy(mac)
    finally:
        mac.learner = owner
    probe.agent.load_state_dict(state)
    probe.init_hidden(batch.batch_size)
    with torch.no_grad():
        pi = torch.stack([probe.forward(batch, t=t) for t in range(batch.max_seq_length - 1)], 1)
    return pi.gather(3, batch["actions"][:, :-1]).squeeze(3)


def valid(batch) -> torch.Tensor:
    """``[B, T-1]`` steps the PPO losses count (filled, before termination)."""
    mask = batch["filled"][:, :-1].float()
    mask[:, 1:] = mask[:, 1:] * (1 - batch["terminated"][:, :-2].float())
    return mask.squeeze(-1).bool()


def test_happo_is_registered_and_trains_in_a_short_run(shared_run):
    """``install()`` puts ``hetplug_happo`` in the host's learner registry (a subclass of
    its PPOLearner); a run without the hetplug key trains with it and logs the M factor."""
    learner, info = shared_run
    host = hetplug_epymarl.load_host("pymarlzooplus")
    assert isinstance(learner, host.ppo_learner) and host.learners[NAME].hetplug_happo
    assert host.learner_kind(types.SimpleNamespace(learner=NAME)) == "happo"
    assert learner.orders and all(sorted(o) == [0, 1, 2] for o in learner.orders)
    assert set(learner.last_factors) == set(learner.orders[-1][1:])
    for stat in ("happo_factor_mean", "pg_loss", "critic_loss"):
        assert stat in info, sorted(info)


def test_with_one_agent_happo_is_the_hosts_ppo_update(pymarlzoo, tmp_path):
    """Oracle: the host's PPOLearner.train on a copy of the same learner. With one agent
    there is no M and HAPPO's update is the host's, parameter for parameter (actor, old
    actor, critic, target critic)."""
    learner, _ = happo_run(pymarlzoo, tmp_path, key=ONE_AGENT, t_max=220)
    assert learner.n_agents == 1 and learner.batches
    mine, host = silent_copy(learner), silent_copy(learner)
    host.__class__ = hetplug_epymarl.load_host("pymarlzooplus").ppo_learner  # the host's own train
    for step in range(2):
        batch = learner.batches[-1]
        host.train(batch, t_env=step, episode_num=step)
        mine.train(batch, t_env=step, episode_num=step)
        for a, b in zip(params_of(host), params_of(mine), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert host.critic_training_steps == mine.critic_training_steps


def test_m_factor_is_the_product_of_the_updated_agents_new_over_old_ratios(shared_run):
    """Brute force: from the agent parameters at every boundary of the sequential update
    (theta_0 before i_1, theta_m after i_m's epochs), M of agent i_m is
    prod_{j<m} pi_{theta_{j+1}}(a^{i_j}) / pi_{theta_j}(a^{i_j}) on every valid step."""
    learner, _ = shared_run
    happo = silent_copy(learner)
    shots = snapshots(happo)
    batch = learner.batches[-1]
    happo.train(batch, t_env=0, episode_num=0)
    order, epochs = happo.orders[-1], happo.args.epochs
    boundaries = [shots[m * epochs] for m in range(len(order) + 1)]
    mask = valid(batch)
    expected = torch.ones(mask.shape)
    for m, agent in enumerate(order[:-1]):
        new = taken_probs(happo.mac, boundaries[m + 1], batch)[..., agent]
        old = taken_probs(happo.mac, boundaries[m], batch)[..., agent]
        expected = expected * new / old
        got = happo.last_factors[order[m + 1]]
        torch.testing.assert_close(got[mask], expected[mask], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(happo.last_factors[order[-1]][mask], torch.ones(int(mask.sum())))


def test_the_order_changes_between_updates_and_follows_the_seed(shared_run):
    learner, _ = shared_run
    happo = silent_copy(learner)
    for step in range(5):
        happo.train(learner.batches[-1], t_env=step, episode_num=step)
    orders = happo.orders
    assert len({tuple(o) for o in orders}) > 1 and all(sorted(o) == [0, 1, 2] for o in orders)
    seeded = torch.Generator().manual_seed(int(learner.args.seed))
    assert orders == [torch.randperm(3, generator=seeded).tolist() for _ in orders]
    happo.args.happo_fixed_order = True
    happo.train(learner.batches[-1], t_env=9, episode_num=9)
    assert happo.orders[-1] == [0, 1, 2]


def test_non_shared_agents_each_move_only_their_own_network(pymarlzoo, tmp_path):
    """``mappo_ns`` (non_shared_mac, rnn_ns) with HAPPO: during agent i's steps only agent
    i's network moves; after the update every agent's network has moved."""
    learner, _ = happo_run(pymarlzoo, tmp_path, config="mappo_ns")
    happo = silent_copy(learner)
    shots = snapshots(happo)
    happo.train(learner.batches[-1], t_env=0, episode_num=0)
    order, epochs = happo.orders[-1], happo.args.epochs
    for step in range(len(shots) - 1):
        agent = order[step // epochs]
        moved = {k.split(".")[1] for k, v in shots[step + 1].items() if not torch.equal(v, shots[step][k])}
        assert moved == {str(agent)}, (step, agent, moved)  # keys "agents.<i>...."
    everyone = {k.split(".")[1] for k, v in shots[-1].items() if not torch.equal(v, shots[0][k])}
    assert everyone == {"0", "1", "2"}


def test_prioritisers_are_refused_with_happo(host, capfd):
    host.fails(capfd, "'per' is not wired for hetplug's HAPPO learner", "mappo", ["per"], t_max=100,
               learner=NAME, **ON_POLICY["mappo"])  # fmt: skip
