"""IS weights reach every loss; the weighted losses are real subclasses built from the algorithm's own."""

from __future__ import annotations

import pytest
import torch

import hetplug_benchmarl
from hetplug_benchmarl.replay import WEIGHT_KEY

from .conftest import OFF_POLICY, losses_of, losses_of_module


@pytest.mark.parametrize("algorithm", sorted(OFF_POLICY))
def test_is_weights_reach_every_loss(experiment, algorithm):
    """A sample with weight 0 cannot move any loss; with weight > 0 it must. This fails
    for a loss that ignores the weights (TorchRL's QMixerLoss) or crashes on their shape."""
    exp = experiment(algorithm)
    hetplug_benchmarl.wrap(exp, ["per"])
    exp.run()
    data = exp.replay_buffers["agents"].sample()
    w = torch.ones_like(data[WEIGHT_KEY])
    w[0] = 0.0
    data[WEIGHT_KEY] = w
    # QMIX/VDN train on the team reward process_batch wrote at the top level
    reward_key = ("next", "reward") if ("next", "reward") in data.keys(True) else ("next", "agents", "reward")
    base = losses_of(exp, data)
    moved = data.clone()
    moved[reward_key][0] += 100.0
    same = losses_of(exp, moved)
    for name in base:
        torch.testing.assert_close(same[name], base[name], msg=f"{algorithm} {name}")
    data[WEIGHT_KEY] = torch.ones_like(w)
    moved[WEIGHT_KEY] = torch.ones_like(w)
    base, changed = losses_of(exp, data), losses_of(exp, moved)
    critic = [k for k in base if k in ("loss", "loss_qvalue", "loss_value")]
    assert critic and all(not torch.allclose(base[k], changed[k]) for k in critic)


@pytest.mark.parametrize("algorithm", ["mappo", "ippo"])
def test_is_weights_reach_the_ppo_loss(experiment, algorithm):
    """Weight 0 on a sample: its advantage cannot move the PPO losses; weight 1: it does.
    With all weights 1 the weighted loss is TorchRL's own mean."""
    exp = experiment(on_policy=algorithm)
    hetplug_benchmarl.wrap(exp, ["per"])
    exp.run()
    loss = exp.losses["agents"]
    data = exp.replay_buffers["agents"].sample()
    key = loss.tensor_keys.advantage
    w = torch.ones_like(data[WEIGHT_KEY])
    w[0] = 0.0
    data[WEIGHT_KEY] = w
    loss.normalize_advantage = False  # its batch statistics would spread the change
    base = losses_of(exp, data)
    moved = data.clone()
    moved[key][0] += 10.0
    for name, value in losses_of(exp, moved).items():
        torch.testing.assert_close(value, base[name], msg=name)
    data[WEIGHT_KEY] = torch.ones_like(w)
    moved[WEIGHT_KEY] = torch.ones_like(w)
    assert not torch.allclose(losses_of(exp, data)["loss_objective"], losses_of(exp, moved)["loss_objective"])
    plain = data.exclude(WEIGHT_KEY)
    ones, unweighted = losses_of(exp, data), losses_of(exp, plain)
    for name in unweighted:
        torch.testing.assert_close(ones[name], unweighted[name], msg=name)


@pytest.mark.parametrize("algorithm", ["qmix", "mappo"])
def test_weighted_loss_is_a_subclass_built_from_the_algorithms_own(experiment, algorithm):
    """The weighted loss is a real subclass of TorchRL's, built on the same networks: the
    optimisers already hold every one of its parameters, and with unit weights it computes
    exactly TorchRL's loss (oracle: the algorithm's own loss object)."""
    from torchrl.objectives import ClipPPOLoss
    from torchrl.objectives.multiagent.qmixer import QMixerLoss

    from hetplug_benchmarl.losses import WeightedClipPPOLoss, WeightedQMixerLoss

    exp = experiment(algorithm) if algorithm == "qmix" else experiment(on_policy=algorithm)
    stock = exp.losses["agents"]
    hetplug_benchmarl.wrap(exp, ["per"])
    new = exp.losses["agents"]
    expected = WeightedQMixerLoss if algorithm == "qmix" else WeightedClipPPOLoss
    assert type(new) is expected and isinstance(new, QMixerLoss if algorithm == "qmix" else ClipPPOLoss)
    assert exp.algorithm.get_loss_and_updater("agents")[0] is new
    held = {id(p) for o in exp.optimizers["agents"].values() for g in o.param_groups for p in g["params"]}
    assert {id(p) for p in new.parameters()} == {id(p) for p in stock.parameters()} <= held
    exp.run()
    data = exp.replay_buffers["agents"].sample()
    data[WEIGHT_KEY] = torch.ones_like(data[WEIGHT_KEY])
    if algorithm == "qmix":  # the stock loss's target was never updated: give it the new one
        for name in ("target_local_value_network_params", "target_mixer_network_params"):
            getattr(stock, name).update_(getattr(new, name))
    mine, theirs = losses_of(exp, data), losses_of_module(stock, data)
    assert mine.keys() == theirs.keys()
    for name in mine:
        torch.testing.assert_close(mine[name], theirs[name], rtol=1e-6, atol=1e-7, msg=name)


def test_an_algorithm_without_a_registered_weighting_is_refused(experiment):
    """A subclass of a known algorithm may build another loss: it is refused by name, never
    patched, and the experiment is left as it was."""
    from benchmarl.algorithms import Qmix

    class MyQmix(Qmix):
        pass

    exp = experiment("qmix")
    exp.algorithm.__class__ = MyQmix  # the user's own algorithm class
    loss, buffer = exp.losses["agents"], exp.replay_buffers["agents"]
    with pytest.raises(ValueError, match="no weighted loss for algorithm MyQmix.*register_weighted_loss"):
        hetplug_benchmarl.wrap(exp, ["per"])
    assert exp.losses["agents"] is loss and exp.replay_buffers["agents"] is buffer and exp.callbacks == []


def test_no_adapter_assigns_a_class():
    """Weighted losses are built, never made by assigning ``__class__``."""
    from pathlib import Path

    adapters = Path(hetplug_benchmarl.__file__).parents[2]  # adapters/ (BenchMARL and EPyMARL)
    sources = list(adapters.rglob("*.py"))
    assert len(sources) > 10
    assert [str(p) for p in sources if "__class__ =" in p.read_text()] == []
