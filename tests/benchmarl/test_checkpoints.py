"""Checkpoints: a restored BenchMARL experiment carries hetplug's state."""

from __future__ import annotations

import copy

import pytest
import torch
from benchmarl.experiment import Callback, Experiment

import hetplug
import hetplug_benchmarl
from hetplug.sharing import SlotMLP
from hetplug_benchmarl import HetplugCallback

from ..snapshots import assert_same, deep_state
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


class _SaveMidRun(Callback):
    """Takes the hetplug callback's checkpoint entry after the first collected batch, with a
    deep snapshot of it and of the plugins at that moment (for HetDPS and SHPPO, of what
    the plugin saves: the slot model and the LatentNet are the host's, restored with its
    model)."""

    def __init__(self, hetplug_callback: HetplugCallback, plugin: str) -> None:
        super().__init__()
        self.cb, self.plugin, self.saved = hetplug_callback, plugin, None

    def view(self):
        pm = self.cb.plugin_manager("agents")
        return deep_state(pm if self.plugin in ("per", "shep", "lbs") else hetplug.plugin_state(pm))

    def on_batch_collected(self, batch) -> None:
        if self.saved is None:
            self.saved = {}
            self.cb.on_state_dict(self.saved)
            self.frozen = deep_state(self.saved)
            self.live = self.view()


@pytest.mark.parametrize(
    "algorithm, plugin",
    [("qmix", "shep"), ("iql", "per"), ("iql", "lbs"), ("iql", "hetdps"), ("mappo", "shppo")],
)
def test_the_checkpoint_entry_is_a_snapshot_and_a_bad_one_changes_nothing(
    experiment, slot_experiment, shppo_experiment, algorithm, plugin
):
    """Issue 19 through BenchMARL's checkpoint mechanism (``on_state_dict`` /
    ``on_load_state_dict``), for every plugin: the entry taken after the first batch is
    unchanged by the training that follows; a bad entry is refused before anything changes;
    loading the saved entry gives back exactly the plugins' state of that moment."""
    options = {
        "shep": {"shep": {"grid_shape": [4, 4]}},
        "hetdps": {"hetdps": {**HETDPS, "preference": 0.0}},
    }.get(plugin, {})
    if plugin == "hetdps":
        exp = slot_experiment()
    elif plugin == "shppo":
        exp = shppo_experiment()
    else:
        exp = experiment(algorithm)
    cb = hetplug_benchmarl.wrap(exp, [plugin], **options)
    probe = _SaveMidRun(cb, plugin)
    probe.experiment = exp
    exp.callbacks.append(probe)
    exp.run()
    updates = cb.groups["agents"].updates
    assert_same(probe.frozen, deep_state(probe.saved), "the saved entry after training on")
    pm = cb.plugin_manager("agents")
    now = deep_state(pm)
    with pytest.raises(AssertionError):
        assert_same(probe.live, probe.view())  # training did change the plugins
    entry = probe.saved["hetplug"]
    bad = [
        ({**entry, "agents": {**entry["agents"], "updates": "1"}}, TypeError, r"\['agents'\] state\['updates'\]"),
        ({**entry, "agents": {"plugins": entry["agents"]["plugins"]}}, ValueError, "missing 'updates'"),
        ({**entry, "agents": {**entry["agents"], "plugins": {plugin: {"format_version": 99}}}}, ValueError,
         f"{plugin} state has format_version=99"),
        ({**entry, "agents": {**entry["agents"], "plugins": {}}}, ValueError, f"got none for {plugin}"),
        ({**entry, "format_version": 9}, ValueError, "format_version=9"),
    ]  # fmt: skip
    if plugin in ("per", "shep", "lbs"):
        nan = copy.deepcopy(entry)
        sampler_key, priorities = ("sharing", "p1") if plugin == "lbs" else ("sampler", "priorities")
        nan["agents"]["plugins"][plugin][sampler_key][priorities].view(-1)[0] = float("nan")
        bad.append((nan, ValueError, rf"state\['{priorities}'\].*nan"))
    for state, error, says in bad:
        with pytest.raises(error, match=says):
            cb.on_load_state_dict({"hetplug": state})
        assert_same(now, deep_state(pm), f"the plugins after a refused load ({says})")
        assert cb.groups["agents"].updates == updates
    cb.on_load_state_dict(probe.saved)
    assert_same(probe.live, probe.view(), "the plugins after loading the saved entry")
    assert cb.groups["agents"].updates == entry["agents"]["updates"] < updates
    assert_same(probe.frozen, deep_state(probe.saved), "the saved entry after loading it")
