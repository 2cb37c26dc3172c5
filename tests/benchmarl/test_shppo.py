"""SHPPO in real BenchMARL runs: the latent losses and the team-size transfer."""

from __future__ import annotations

import pytest
import torch

import hetplug_benchmarl
from hetplug_benchmarl.wiring.shppo import shppo_model

from .conftest import ITERS


def test_shppo_latent_losses_are_trained_by_the_plugin_and_logged(shppo_experiment):
    exp = shppo_experiment()
    cb = hetplug_benchmarl.wrap(exp, ["shppo"])
    model = shppo_model(exp, "agents")
    before = [p.detach().clone() for p in model.latent_net.parameters()]
    exp.run()
    for name in ("latent_loss", "inference_loss", "entropy", "distance", "value"):
        assert len(cb.history[f"hetplug/shppo/{name}"]) == ITERS
    assert any(
        not torch.equal(a, b.detach()) for a, b in zip(before, model.latent_net.parameters(), strict=True)
    )
    assert all(p.grad is None for p in model.latent_net.parameters())  # nothing left for BenchMARL's Adam
    # BenchMARL's own update (its optimiser holds the LatentNet too) leaves it alone: eq. (13)
    latent = [p.detach().clone() for p in model.latent_net.parameters()]
    actor = [p.detach().clone() for p in model.actor.parameters()]
    exp._optimizer_loop("agents")
    for a, b in zip(latent, model.latent_net.parameters(), strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=0)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(actor, model.actor.parameters(), strict=True))


def test_shppo_policy_runs_with_another_team_size(shppo_experiment, tmp_path):
    """Zero-shot: the policy trained with 3 agents drives 5 (navigation's observations do
    not depend on the team size; SHPPO's parameters neither)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    trained = shppo_experiment(n_agents=3, folder=tmp_path / "a")
    hetplug_benchmarl.wrap(trained, ["shppo"])
    trained.run()
    bigger = shppo_experiment(n_agents=5, folder=tmp_path / "b")
    hetplug_benchmarl.copy_policy(trained, bigger)
    src, dst = trained.group_policies["agents"].state_dict(), bigger.group_policies["agents"].state_dict()
    for key in src:
        torch.testing.assert_close(src[key], dst[key])
    rollout = bigger.test_env.rollout(max_steps=10, policy=bigger.policy, auto_cast_to_device=True)
    assert rollout.get(("agents", "action")).shape[-2] == 5
    assert torch.isfinite(rollout.get(("next", "agents", "reward"))).all()
    model = shppo_model(bigger, "agents")
    mu, _ = model.latent_net(rollout.get(("agents", "observation"))[0])
    assert mu.shape == (10, 5, 2)


def test_shppo_needs_its_model_and_an_on_policy_algorithm(experiment):
    exp = experiment(on_policy=True)
    with pytest.raises(
        ValueError, match="plugin 'shppo' needs the group's policy built from hetplug's SHPPO model"
    ):
        hetplug_benchmarl.wrap(exp, ["shppo"])
    exp = experiment("iql")
    with pytest.raises(ValueError, match="plugin 'shppo' is not available with off-policy Iql"):
        hetplug_benchmarl.wrap(exp, ["shppo"])
