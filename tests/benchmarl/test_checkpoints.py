"""Checkpoints: a restored BenchMARL experiment carries hetplug's state."""

from __future__ import annotations

import pytest
import torch
from benchmarl.experiment import Experiment

import hetplug_benchmarl
from hetplug.sharing import SlotMLP
from hetplug_benchmarl import HetplugCallback

from .conftest import ENVS, HETDPS, ITERS, STEPS


@pytest.mark.parametrize("how", ["callbacks", "wrap"])
def test_checkpoint_restores_priorities(experiment, how):
    kwargs = {"shep": {"grid_shape": [4, 4]}}
    if how == "callbacks":
        cb = HetplugCallback(["shep"], kwargs)
        exp = experiment("qmix", callbacks=[cb])
    else:
        exp = experiment("qmix")
        cb = hetplug_benchmarl.wrap(exp, ["shep"], **kwargs)
    exp.run()
    saved = cb.priorities("agents").clone()
    ckpt = next((exp.folder_name / "checkpoints").glob("*.pt"))
    if how == "callbacks":
        cb2 = HetplugCallback(["shep"], kwargs)
        exp2 = experiment("qmix", callbacks=[cb2], restore=str(ckpt))
    else:
        exp2 = experiment("qmix", restore=str(ckpt))
        cb2 = hetplug_benchmarl.wrap(exp2, ["shep"], **kwargs)
    torch.testing.assert_close(cb2.plugin_manager("agents").get_plugin("shep").sampler.priorities, saved)
    assert len(exp2.replay_buffers["agents"]) == len(exp.replay_buffers["agents"]) >= ITERS * ENVS * STEPS
    assert cb2.groups["agents"].updates == cb.groups["agents"].updates == ITERS


def test_checkpoint_restores_hetdps_groups(slot_experiment):
    """A restored run continues with the same grouping: the manager's state (under
    "hetplug") and the slot model's routing (in the loss state) come back together."""
    exp = slot_experiment()
    exp.config.checkpoint_at_end = True
    cb = hetplug_benchmarl.wrap(exp, ["hetdps"], hetdps={**HETDPS, "preference": 0.0})
    exp.run()
    plan = cb.log.regroupings("agents")[-1][1]
    assert len(set(plan)) == 3
    ckpt = next((exp.folder_name / "checkpoints").glob("*.pt"))
    exp.config.restore_file = str(ckpt)
    exp2 = slot_experiment()
    exp2.config.restore_file = str(ckpt)
    exp2 = Experiment(task=exp2.task, algorithm_config=exp2.algorithm_config, model_config=exp2.model_config,
                      critic_model_config=exp2.critic_model_config, seed=0, config=exp2.config)  # fmt: skip
    cb2 = hetplug_benchmarl.wrap(exp2, ["hetdps"], hetdps={**HETDPS, "preference": 0.0})
    plugin = cb2.plugin_manager("agents").get_plugin("hetdps")
    assert tuple(plugin.routing("cpu").tolist()) == plan
    slot = [m for m in exp2.group_policies["agents"].modules() if isinstance(m, SlotMLP)][0]
    assert tuple(slot.routing.tolist()) == plan
    assert len(plugin.estimator.pool) == len(cb.plugin_manager("agents").get_plugin("hetdps").estimator.pool)
