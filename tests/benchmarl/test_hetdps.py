"""HetDPS in real BenchMARL runs: the slot model regrouped in place."""

from __future__ import annotations

import pytest
import torch
from benchmarl.experiment import Experiment

import hetplug_benchmarl
from hetplug.sharing import SlotMLP

from .conftest import HETDPS


@pytest.mark.parametrize("on_policy", [False, "mappo"], ids=["iql", "mappo"])
def test_hetdps_regroups_mid_training_in_place(slot_experiment, on_policy):
    """preference 0 makes every agent its own exemplar: the first regrouping splits the
    fully shared start into three networks, during exp.run(), without rebuilding."""
    exp = slot_experiment(on_policy)
    policy = exp.group_policies["agents"]
    optimisers = dict(exp.optimizers["agents"])
    cb = hetplug_benchmarl.wrap(exp, ["hetdps"], hetdps={**HETDPS, "preference": 0.0})
    exp.run()
    plans = cb.log.regroupings("agents")
    assert [it for it, _ in plans] == [2, 4]
    assert len(set(plans[0][1])) == 3  # split into one network per agent
    slot = [m for m in policy.modules() if isinstance(m, SlotMLP)][0]
    assert torch.equal(slot.routing.cpu(), torch.tensor(plans[-1][1]))
    assert exp.group_policies["agents"] is policy and exp.optimizers["agents"] == optimisers
    loss = exp.losses["agents"]
    for attr in [a for a in dir(loss) if a.startswith("target_") and a.endswith("_params")]:
        target = getattr(loss, attr)
        for key, value in target.items(True, True):
            if key[-1] == "routing":
                assert torch.equal(value.cpu(), slot.routing.cpu())
    assert cb.history["hetplug/hetdps/n_groups"] == [3.0, 3.0]
    assert "hetplug/hetdps/distance/0_1" in cb.history
    assert "hetplug/hetdps/plan/agent_2" in cb.history


def test_hetdps_split_copies_slots_targets_and_adam_state(slot_experiment):
    exp = slot_experiment(iters=2)
    cb = hetplug_benchmarl.wrap(exp, ["hetdps"], hetdps={**HETDPS, "interval": 1000, "preference": -10.0})
    exp.run()
    plugin = cb.plugin_manager("agents").get_plugin("hetdps")
    slot = [m for m in exp.group_policies["agents"].modules() if isinstance(m, SlotMLP)][0]
    data = exp.replay_buffers["agents"].sample()
    before = exp.group_policies["agents"](data.clone()).get(("agents", "action_value")).detach()
    plan = plugin.manager.update(torch.tensor([[0.0, 1.0, 50.0], [1.0, 0.0, 50.0], [50.0, 50.0, 0.0]]))
    assert plan.case == "split", plan.reason
    plugin.slots.apply(plan)
    new = plan.assignment[2]
    assert new != plan.assignment[0] == 0
    loss = exp.losses["agents"]
    target = loss.target_value_network_params
    optimiser = next(iter(exp.optimizers["agents"].values()))
    for p in slot.parameters():
        torch.testing.assert_close(p[new], p[0], rtol=0, atol=0)
        key = next(k for k, v in loss.value_network_params.items(True, True) if v.data_ptr() == p.data_ptr())
        torch.testing.assert_close(target.get(key)[new], target.get(key)[0], rtol=0, atol=0)
        torch.testing.assert_close(
            optimiser.state[p]["exp_avg"][new], optimiser.state[p]["exp_avg"][0], rtol=0, atol=0
        )
    after = exp.group_policies["agents"](data.clone()).get(("agents", "action_value")).detach()
    torch.testing.assert_close(after, before)  # a copy changes who uses which weights, not the outputs


def test_hetdps_without_the_slot_model_fails_at_wrap_time(experiment):
    exp = experiment("iql")
    buffer = exp.replay_buffers["agents"]
    with pytest.raises(
        ValueError, match="plugin 'hetdps' needs the group's policy built from hetplug's slot model"
    ):
        hetplug_benchmarl.wrap(exp, ["hetdps"])
    assert exp.replay_buffers["agents"] is buffer and exp.callbacks == []


def test_hetdps_slot_count_must_match_the_model(slot_experiment):
    exp = slot_experiment(n_slots=3)
    with pytest.raises(ValueError, match="hetdps.n_slots=2 differs from the slot model's n_slots=3"):
        hetplug_benchmarl.wrap(exp, ["hetdps"], hetdps={**HETDPS, "n_slots": 2})


def test_slot_model_refuses_a_centralised_critic(experiment):
    from benchmarl.environments import VmasTask

    exp = experiment(on_policy=True)
    with pytest.raises(ValueError, match="hetplug_slot_mlp is a per-agent model"):
        Experiment(
            task=VmasTask.NAVIGATION.get_from_yaml(),
            algorithm_config=exp.algorithm_config,
            model_config=hetplug_benchmarl.SlotModelConfig(num_cells=[8]),
            seed=0,
            config=exp.config,
        )


def test_slot_model_yaml_and_registry():
    from benchmarl.models import model_config_registry

    cfg = hetplug_benchmarl.SlotModelConfig.get_from_yaml()
    assert model_config_registry["hetplug_slot_mlp"] is hetplug_benchmarl.SlotModelConfig
    assert cfg.start == "full" and cfg.n_slots is None and list(cfg.num_cells) == [256, 256]
    shppo = hetplug_benchmarl.SHPPOModelConfig.get_from_yaml()
    assert model_config_registry["hetplug_shppo"] is hetplug_benchmarl.SHPPOModelConfig
    assert (shppo.num_cells, shppo.latent_dim, shppo.decoder_hidden) == (64, 3, 64)  # Table IV
