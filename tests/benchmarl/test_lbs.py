"""LBS in real BenchMARL runs: experience shared between a group's independent learners."""

from __future__ import annotations

import pytest
import torch
from benchmarl.experiment import Experiment

import hetplug_benchmarl
from hetplug_benchmarl.replay import WEIGHT_KEY

from .conftest import ITERS, losses_of


@pytest.mark.parametrize("algorithm", ["iql", "isac", "iddpg"])
def test_lbs_shares_experience_between_the_groups_agents(experiment, algorithm):
    exp = experiment(algorithm)
    cb = hetplug_benchmarl.wrap(exp, ["lbs"])
    exp.run()
    shared = cb.history["hetplug/lbs/shared_fraction"]
    assert len(shared) == ITERS and max(shared) > 0  # learners trained on other agents' items
    data = exp.replay_buffers["agents"].sample()
    assert data[WEIGHT_KEY].shape == (32, 3)


def test_lbs_minibatch_puts_each_item_in_its_learners_column(experiment):
    from hetplug_benchmarl.replay.lbs import mixed

    exp = experiment("iql")
    hetplug_benchmarl.wrap(exp, ["lbs"])
    exp.run()
    storage = exp.replay_buffers["agents"].storage
    slot = torch.tensor([[5, 17, 2], [40, 40, 40]])
    agent = torch.tensor([[2, 0, 1], [1, 2, 0]])
    data = mixed(storage, "agents", slot, agent)
    for r in range(2):
        for i in range(3):
            item = storage.get(slot[r, i : i + 1])
            for key in (("agents", "observation"), ("agents", "action"), ("next", "agents", "reward")):
                torch.testing.assert_close(data.get(key)[r, i], item.get(key)[0, agent[r, i]], rtol=0, atol=0)
        torch.testing.assert_close(
            data.get(("next", "done"))[r], storage.get(slot[r, :1]).get(("next", "done"))[0]
        )


@pytest.mark.parametrize("share", [True, False], ids=["shared", "independent"])
def test_lbs_td_fn_equals_each_learner_on_a_swapped_transition(experiment, share):
    """Oracle: learner i's TD on agent k's item = the loss's TD in column i of the plain
    transition with columns i and k swapped."""
    from benchmarl.environments import VmasTask
    from benchmarl.models.mlp import MlpConfig

    base = experiment("iql")
    base.config.share_policy_params = share  # the Q-networks: one shared, or one per agent
    exp = Experiment(task=VmasTask.NAVIGATION.get_from_yaml(), algorithm_config=base.algorithm_config,
                     model_config=MlpConfig.get_from_yaml(), seed=0, config=base.config)  # fmt: skip
    hetplug_benchmarl.wrap(exp, ["lbs"])
    exp.run()
    buf = exp.replay_buffers["agents"]
    storage = buf.storage
    from hetplug_benchmarl.replay.lbs import mixed

    sources, slots = torch.tensor([0, 2, 1]), torch.tensor([3, 3, 60])
    cand = mixed(storage, "agents", slots.unsqueeze(1).expand(3, 3), sources.unsqueeze(1).expand(3, 3))
    td = buf._td(cand).T  # [N, K]
    for j in range(3):
        for i in range(3):
            plain = storage.get(slots[j : j + 1]).clone()
            k = int(sources[j])
            for key in (("agents",), ("next", "agents")):
                sub = plain.get(key)
                order = list(range(3))
                order[i], order[k] = order[k], order[i]
                plain.set(key, sub[:, order])
            expected = buf._td(plain)[0, i]
            torch.testing.assert_close(td[i, j], expected, rtol=1e-5, atol=1e-6)


def test_lbs_weights_enter_each_learners_loss(experiment):
    exp = experiment("iql")
    hetplug_benchmarl.wrap(exp, ["lbs"])
    exp.run()
    data = exp.replay_buffers["agents"].sample()
    key = ("next", "agents", "reward")
    w = torch.ones_like(data[WEIGHT_KEY])
    w[0, 1] = 0.0
    data[WEIGHT_KEY] = w
    base = losses_of(exp, data)
    moved = data.clone()
    moved[key][0, 1] += 100.0
    for name, value in losses_of(exp, moved).items():
        torch.testing.assert_close(value, base[name], msg=name)
    data[WEIGHT_KEY] = torch.ones_like(w)
    moved[WEIGHT_KEY] = torch.ones_like(w)
    assert not torch.allclose(losses_of(exp, data)["loss"], losses_of(exp, moved)["loss"])


@pytest.mark.parametrize("algorithm", ["qmix", "masac"])
def test_lbs_needs_independent_learners(experiment, algorithm):
    exp = experiment(algorithm)
    with pytest.raises(ValueError, match="plugin 'lbs' shares experience between independent learners"):
        hetplug_benchmarl.wrap(exp, ["lbs"])
