"""SHPPO in EPyMARL (the ``shppo`` wiring): the actor with a HeteLayer, the LatentNet bound
to the plugin through ``hetplug_bind`` and trained by it only."""

from __future__ import annotations

import pytest
import torch

from hetplug_epymarl import read_config
from hetplug_epymarl.updates import _forward_steps
from hetplug_epymarl.wiring.shppo import LATENT, MEMORY, AuxiliaryLosses, SHPPOAgent

from .cases import KEY3, ON_POLICY


def test_shppo_agent_replaces_rnn_and_logs_latent_losses(shppo_run):
    session, info, _ = shppo_run
    agent = session.learner.inner.mac.agent
    assert isinstance(agent, SHPPOAgent) and agent.latent_net.latent_dim == 2
    assert session.pm.get_plugin("shppo").latent_net is agent.latent_net
    for name in ("latent_loss", "inference_loss", "entropy", "distance", "value"):
        assert f"hetplug/shppo/{name}" in info
    assert session.metrics["shppo/distance"] > 0  # three agents: their latents are spread


def test_shppo_latent_net_is_trained_by_the_plugin_only(shppo_run, learner_copies):
    """The host's PPO update leaves the LatentNet alone (eq. 13, latents detached) and
    trains the shared actor; the plugin's step then moves the LatentNet."""
    session, _, _ = shppo_run
    host, _ = learner_copies(session)
    batch = session.buffer[torch.tensor([0, 1, 2, 3]).numpy()]
    latent = [p.detach().clone() for p in host.mac.agent.latent_net.parameters()]
    actor = [p.detach().clone() for p in host.mac.agent.actor.parameters()]
    host.train(batch, t_env=0, episode_num=0)
    for a, b in zip(latent, host.mac.agent.latent_net.parameters(), strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=0)
    assert any(
        not torch.equal(a, b.detach()) for a, b in zip(actor, host.mac.agent.actor.parameters(), strict=True)
    )
    live = session.learner.inner.mac.agent.latent_net
    before = [p.detach().clone() for p in live.parameters()]
    session.wiring.auxiliary.train(session.learner.inner.mac, batch, session.updates + 1)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, live.parameters(), strict=True))


def test_shppo_agents_get_their_own_generated_weights(shppo_run):
    """The same input through the HeteLayer with two agents' latents gives two outputs; the
    shared layers are one set of weights."""
    session, _, _ = shppo_run
    agent = session.learner.inner.mac.agent
    x = torch.randn(1, 3, agent.actor.obs_dim).expand(1, 3, -1)
    h = torch.zeros(1, 3, agent.hidden_dim)
    out, _ = agent(x.reshape(3, -1), h)
    mu, _ = agent.latent_net(x, h)
    ref, _ = agent.actor(x, mu, h)
    torch.testing.assert_close(out, ref.reshape(3, -1))
    mu_alt = mu.clone()
    mu_alt[0, 1] = mu[0, 0] + 1.0
    alt, _ = agent.actor(x, mu_alt, h)
    assert not torch.allclose(alt[0, 1], ref[0, 1]) and torch.equal(alt[0, 0], ref[0, 0])


@pytest.mark.parametrize(
    "config,hp,message",
    [
        ("qmix", ["shppo"], "'shppo' is an actor for the PPO learner .* or hetplug's HAPPO"),
        ("mappo_ns", ["shppo"], "'shppo' replaces the parameter-shared rnn agent"),
    ],
)
def test_shppo_bad_configs_fail_before_training(host, capfd, config, hp, message):
    host.fails(capfd, message, config, hp, t_max=100, **ON_POLICY.get(config.removesuffix("_ns"), {}))


@pytest.mark.parametrize(
    "hp,message",
    [
        (
            {"plugins": ["shppo"], "shppo": {"latent_dim": 0}},
            "hetplug.shppo: latent_dim must be an integer >= 1, got latent_dim=0",
        ),
        (["shppo", "hetdps"], "'hetdps' and 'shppo' both replace the rnn agent"),
        ({"plugins": ["shppo"], "shppo": {"lambda_e": -1.0}}, "lambda_e"),
    ],
)
def test_shppo_settings_errors(hp, message):
    with pytest.raises(ValueError, match=message):
        read_config(hp)


def _batch(session, rows=(0, 1, 2)):
    """A copy of stored episodes (an EpisodeBatch with the latents the agents acted with)."""
    return session.buffer[torch.tensor(rows).numpy()]


def test_shppo_explores_with_sampled_latents_and_tests_with_mu(shppo_run):
    """Algorithm 1 in EPyMARL: with test_mode=False each call samples l ~ N(mu, sigma), so
    two calls on the same input give different action probabilities; test_mode=True acts
    with mu. ``select_actions`` writes the step's latent into the episode batch."""
    session, _, _ = shppo_run
    mac = session.learner.inner.mac
    agent = mac.agent
    batch = _batch(session)
    assert LATENT in batch.scheme and batch[LATENT].shape[-2:] == (3, 2)
    inputs = mac._build_inputs(batch, 0)
    h = torch.randn(3, 3, agent.hidden_dim)

    def probs(explore):
        agent.act(explore)
        with torch.no_grad():
            return torch.softmax(agent(inputs, h)[0], -1), agent.last_latent

    (a, la), (b, lb) = probs(True), probs(True)
    assert not torch.allclose(a, b) and not torch.allclose(la, lb)
    (c, lc), (d, _) = probs(False), probs(False)
    torch.testing.assert_close(c, d, rtol=0, atol=0)
    mu, _ = agent.latent_net(inputs.reshape(3, 3, -1), h)
    torch.testing.assert_close(lc, mu)
    for test_mode in (False, True):
        mac.init_hidden(batch.batch_size)
        mac.select_actions(batch, t_ep=0, t_env=0, test_mode=test_mode)
        torch.testing.assert_close(batch[LATENT][:, 0], agent.last_latent)
    with torch.no_grad():
        mu0, _ = agent.latent_net(inputs.reshape(3, 3, -1), torch.zeros(3, 3, agent.hidden_dim))
    torch.testing.assert_close(batch[LATENT][:, 0], mu0)  # test mode: the mean


def test_training_re_evaluates_with_the_latents_that_acted(shppo_run, learner_copies):
    """The learner's re-evaluation (``mac.forward`` outside ``select_actions``) reproduces
    the action probabilities of the acting calls step for step, sampled latents included:
    the PPO ratio of the host's first epoch is 1. With other latents it is not."""
    session, _, _ = shppo_run
    host, _ = learner_copies(session)
    mac = host.mac
    batch = _batch(session)
    acted = []
    forward = mac.forward

    def recording(*args, **kwargs):
        out = forward(*args, **kwargs)
        if mac._acting is not None:
            acted.append(out.detach().clone())
        return out

    mac.forward = recording
    mac.init_hidden(batch.batch_size)
    T = batch.max_seq_length - 1
    memories = []
    for t in range(T):  # act through the stored episodes as the runner does
        memories.append(mac.hidden_states.reshape(batch.batch_size, 3, -1).detach().clone())
        mac.select_actions(batch, t_ep=t, t_env=0, test_mode=False)
    del mac.forward
    torch.testing.assert_close(batch[MEMORY][:, :T], torch.stack(memories, 1))  # h^{t-1}, stored
    aux = AuxiliaryLosses(None, None).batch(mac, batch)
    torch.testing.assert_close(aux.extra["hidden_state"], batch[MEMORY])
    acted = torch.stack(acted, 1)
    replayed = _forward_steps(mac, batch)
    torch.testing.assert_close(replayed, acted, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        old = _forward_steps(host.old_mac, batch)  # the old policy of the host's PPO ratio
    torch.testing.assert_close(old, acted, rtol=1e-5, atol=1e-6)
    batch.data.transition_data[LATENT].zero_()
    assert not torch.allclose(_forward_steps(mac, batch), acted, atol=1e-3)


def test_latent_losses_use_the_runs_gamma(shppo_run):
    session, _, _ = shppo_run
    plugin = session.pm.get_plugin("shppo")
    assert session.spec.extra["gamma"] == session.args.gamma == plugin.gamma
    assert plugin.inference.pooling == "concat" and plugin.inference.n_agents == 3


@pytest.fixture(scope="module")
def happo_shppo_run(pymarlzoo, tmp_path_factory):
    """The paper's method in EPyMARL: HAPPO (share) with SHPPO's agent, three agents."""
    with pymarlzoo.inside(tmp_path_factory.mktemp("happo_shppo")) as root:
        hp = {"plugins": ["shppo"], "shppo": {"latent_dim": 2, "zero_latent_inputs": True}}
        session = pymarlzoo.run(
            "mappo", hp, key=KEY3, learner="hetplug_happo", t_max=200, **ON_POLICY["mappo"]
        )
        return session, pymarlzoo.info(root)


def test_shppo_trains_on_happo(happo_shppo_run):
    """``learner: hetplug_happo`` with the shppo plugin: the agent is SHPPO's (with the
    requested ablation), the sequential update ran (an order, M), the latent losses ran."""
    session, info = happo_shppo_run
    learner = session.learner.inner
    assert learner.hetplug_happo and learner.orders and learner.last_factors
    assert isinstance(learner.mac.agent, SHPPOAgent) and learner.mac.agent.latent_net.zero_inputs
    for stat in ("happo_factor_mean", "hetplug/shppo/latent_loss", "hetplug/shppo/inference_loss"):
        assert stat in info
