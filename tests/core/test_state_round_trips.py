"""Saved state is a snapshot (issue 19, class 7): for every plugin, a state taken with
``hetplug.plugin_state`` does not change when training goes on, loading it does not tie
the plugin to it, and saving, training on, restoring and training again gives a
bit-identical continuation: the same hook results and the same final state, in the same
plugin manager and in a fresh one (a new process). The host's own objects (the slot
model of HetDPS, SHPPO's LatentNet) are saved and restored beside it, as hosts do."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

import hetplug
from hetplug.shppo import LatentNet

from ..snapshots import assert_same, deep_state, shared_tensors
from .test_bad_inputs import HETDPS, LBS_SPEC, OBS, SPEC, T, batch, configured, slot_parts, td_fn

PLUGINS = ("per", "shep", "lbs", "hetdps", "shppo")


class Host:
    """A plugin manager with one configured plugin and the host objects it is bound to."""

    def __init__(self, name: str, seed: int) -> None:
        self.name = name
        options = {"per": {}, "shep": {"grid_shape": [4, 4]}, "lbs": {}, "hetdps": HETDPS,
                   "shppo": {"latent_dim": 2}}[name]  # fmt: skip
        self.pm = configured(name, options, spec=LBS_SPEC if name == "lbs" else SPEC)
        self.modules: list[Any] = []  # what the host saves with its own model
        self.targets: list[torch.Tensor] = []
        if name == "hetdps":
            model, opt, slots = slot_parts(seed)
            self.modules, self.targets = [model, opt], slots.targets
            self.pm.hook.hetplug_bind(host=hetplug.HostObjects(parameter_slots=slots))
        elif name == "shppo":
            torch.manual_seed(seed)
            net = LatentNet(OBS, latent_dim=2, hidden=8)
            self.modules = [net]
            self.pm.hook.hetplug_bind(host=hetplug.HostObjects(latent_net=net))

    def save(self) -> dict[str, Any]:
        return {
            "plugins": hetplug.plugin_state(self.pm),
            "host": [copy.deepcopy(m.state_dict()) for m in self.modules],
            "targets": [t.clone() for t in self.targets],
        }

    def restore(self, saved: dict[str, Any]) -> None:
        hetplug.load_plugin_state(self.pm, saved["plugins"])
        for m, s in zip(self.modules, saved["host"], strict=True):
            m.load_state_dict(copy.deepcopy(s))  # the host's copy: its optimiser may alias what it loads
        for t, s in zip(self.targets, saved["targets"], strict=True):
            t.copy_(s)

    def train(self, steps: int, start: int) -> list[Any]:
        """``steps`` rounds of the plugin's hooks on fresh data; every hook result."""
        hook, out = self.pm.hook, []
        for k in range(start, start + steps):
            torch.manual_seed(k)  # SHPPO's latent samples, HetDPS's CVAE batches
            g = torch.Generator().manual_seed(k)
            if self.name in ("per", "shep"):
                b = batch(b=3, seed=k, td_error=torch.rand(3, T, generator=g))
                out.append(hook.hetplug_trajectories_collected(batch=b))
                out.append(hook.hetplug_replay_add(batch=b))
                s = hook.hetplug_replay_sample(batch_size=4, generator=g, td_fn=None)
                out.append(s)
                td = torch.rand(4, T, generator=g)
                out.append(hook.hetplug_update_priorities(indices=s.indices, td_error=td, mask=None))
            elif self.name == "lbs":
                out.append(hook.hetplug_replay_add(batch=batch(b=3, t=1, seed=k)))
                out.append(hook.hetplug_replay_sample(batch_size=2, generator=g, td_fn=td_fn))
            elif self.name == "hetdps":
                out.append(hook.hetplug_trajectories_collected(batch=batch(b=4, seed=k)))
            else:
                out.append(hook.hetplug_auxiliary_losses(batch=batch(seed=k), update=k))
            out.append(hook.hetplug_after_update(update=k))
        return out


@pytest.mark.parametrize("name", PLUGINS)
def test_saving_training_on_and_restoring_continues_bit_identically(name):
    host = Host(name, seed=0)
    host.train(3, start=1)
    saved = host.save()
    frozen = deep_state(saved)
    at_save = deep_state(host.pm)
    first = deep_state(host.train(3, start=10))
    end = deep_state(host.pm)
    assert_same(frozen, deep_state(saved), "saved state after training on")

    host.restore(saved)
    assert_same(at_save, deep_state(host.pm), "plugin state right after restoring (values and types)")
    assert_same(frozen, deep_state(saved), "saved state after loading it")
    assert_same(first, deep_state(host.train(3, start=10)), "hook results after restoring")
    assert_same(end, deep_state(host.pm), "plugin state after restoring and training again")
    assert_same(frozen, deep_state(saved), "saved state after training on what was loaded")

    fresh = Host(name, seed=1)  # another process: other data seen, other host weights
    fresh.train(2, start=50)
    fresh.restore(saved)
    assert_same(at_save, deep_state(fresh.pm), "a fresh plugin manager right after restoring")
    assert_same(first, deep_state(fresh.train(3, start=10)), "hook results in a fresh plugin manager")
    assert_same(end, deep_state(fresh.pm), "plugin state in a fresh plugin manager")


@pytest.mark.parametrize("name", PLUGINS)
def test_a_state_dict_shares_no_tensor_with_the_plugin(name):
    """No tensor of a state dict is (a view of) one the plugin holds: in-place changes of
    either never reach the other."""
    host = Host(name, seed=0)
    host.train(2, start=1)
    assert not shared_tensors(host.pm, hetplug.plugin_state(host.pm)), (
        f"{name}: the state dict holds live tensors"
    )


def test_the_round_trip_driver_moves_every_plugin():
    """The continuation above is not vacuous: training changes every plugin's state."""
    for name in PLUGINS:
        host = Host(name, seed=0)
        host.train(2, start=1)
        before = deep_state(host.pm)
        host.train(2, start=10)
        with pytest.raises(AssertionError):
            assert_same(before, deep_state(host.pm))
