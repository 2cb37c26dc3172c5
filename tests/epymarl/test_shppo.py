"""SHPPO in EPyMARL (the ``shppo`` wiring): the actor with a HeteLayer, the LatentNet bound
to the plugin through ``hetplug_bind`` and trained by it only."""

from __future__ import annotations

import pytest
import torch

from hetplug_epymarl import read_config
from hetplug_epymarl.wiring.shppo import SHPPOAgent

from .cases import ON_POLICY


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
        ("qmix", ["shppo"], "'shppo' is an actor for the PPO learner"),
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
            "hetplug.shppo: latent_dim must be >= 1",
        ),
        (["shppo", "hetdps"], "'hetdps' and 'shppo' both replace the rnn agent"),
        ({"plugins": ["shppo"], "shppo": {"lambda_e": -1.0}}, "lambda_e"),
    ],
)
def test_shppo_settings_errors(hp, message):
    with pytest.raises(ValueError, match=message):
        read_config(hp)
