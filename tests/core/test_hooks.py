"""The plugin contract: every hook is driven through the plugin manager here."""

from __future__ import annotations

import importlib.metadata
import inspect
import subprocess
import sys
from pathlib import Path

import pluggy
import pytest
import torch

import hetplug
from hetplug import hookspecs
from hetplug.plugins import BUILTIN_NAMES

from .toy_plugin import ToyPlugin

HOOK_NAMES = sorted(
    n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("hetplug_")
)
SPEC = hetplug.HostSpec(n_agents=3, max_steps=5, capacity=16, n_actions=4)


def make_batch(b=4, t=5, n=3, seed=0, td=False):
    g = torch.Generator().manual_seed(seed)
    return hetplug.TrajectoryBatch(
        reward=torch.rand(b, t, generator=g),
        mask=torch.ones(b, t, dtype=torch.bool),
        positions=torch.rand(b, t, n, 2, generator=g) * 2 - 1,
        actions=torch.randint(0, 4, (b, t, n), generator=g),
        td_error=torch.randn(b, t, generator=g) if td else None,
    )


@pytest.fixture
def toy_entry_point(monkeypatch):
    ep = importlib.metadata.EntryPoint(name="toy", value="tests.core.toy_plugin:ToyPlugin", group="hetplug")
    installed = hetplug.plugins.entry_points
    monkeypatch.setattr(
        hetplug.plugins,
        "entry_points",
        lambda group: [*installed(group=group), ep] if group == "hetplug" else [],
    )
    return ep


def configured(names, options=None):
    pm = hetplug.get_plugin_manager(names, options)
    pm.hook.hetplug_configure.call_historic(kwargs={"spec": SPEC})
    return pm


def test_every_hook_has_a_test_and_docs():
    """Like datasette: each hookspec has a test_hook_<name> here and a section in docs/hooks.md."""
    assert 1 <= len(HOOK_NAMES) <= 8
    tests = {n for n in globals() if n.startswith("test_hook_")}
    docs = (Path(__file__).resolve().parents[2] / "docs" / "hooks.md").read_text()
    for name in HOOK_NAMES:
        assert any(t.startswith(f"test_hook_{name}") for t in tests), name
        assert f"`{name}" in docs, name
        assert inspect.getdoc(getattr(hookspecs, name)), name


def test_hook_hetplug_configure_is_historic(toy_entry_point):
    pm = hetplug.get_plugin_manager(["shep"])
    pm.hook.hetplug_configure.call_historic(kwargs={"spec": SPEC})
    late = ToyPlugin(ToyPlugin.config_class())
    pm.register(late)  # registered after configure: historic replay
    assert late.calls == ["configure"] and late.spec is SPEC
    assert pm.get_plugin("shep").sampler.capacity == 16


def test_hook_hetplug_bind_hands_every_plugin_the_hosts_objects(toy_entry_point):
    """The host's objects reach plugins only through hetplug_bind: SHPPO gets the LatentNet,
    HetDPS the parameter slots, a third-party plugin whatever it reads; a plugin missing what
    it needs refuses by name."""
    from hetplug.sharing import ParameterSlots, SlotMLP
    from hetplug.shppo import LatentNet

    net = LatentNet(4, 0, 3)
    slots_model = SlotMLP(3, 4, 2, hidden=(8,))
    slots = ParameterSlots(list(slots_model.parameters()), routing=slots_model.routing)
    pm = configured(["shppo", "hetdps", "toy"])
    pm.hook.hetplug_bind(host=hetplug.HostObjects(latent_net=net, parameter_slots=slots, extra={"k": 1}))
    assert pm.get_plugin("shppo").latent_net is net
    assert pm.get_plugin("hetdps").slots is slots
    assert pm.get_plugin("toy").host.extra == {"k": 1}
    with pytest.raises(ValueError, match="latent_net"):
        configured(["shppo"]).hook.hetplug_bind(host=hetplug.HostObjects())
    with pytest.raises(ValueError, match="parameter_slots"):
        configured(["hetdps"]).hook.hetplug_bind(host=hetplug.HostObjects())


def test_hook_hetplug_trajectories_collected(toy_entry_point):
    pm = configured(["shep", "toy"], {"toy": {"scale": 2.0}, "shep": {"intrinsic_reward": True}})
    results = pm.hook.hetplug_trajectories_collected(batch=make_batch())
    assert len(results) == 2
    rewards = [r.intrinsic_reward for r in results]
    assert all(r.shape == (4, 5) for r in rewards)
    assert any(torch.all(r == 2.0) for r in rewards)


def test_hook_hetplug_replay_add():
    pm = configured(["per"])
    first = pm.hook.hetplug_replay_add(batch=make_batch(b=10))
    second = pm.hook.hetplug_replay_add(batch=make_batch(b=10))
    assert first.tolist() == list(range(10))
    assert second.tolist() == [10, 11, 12, 13, 14, 15, 0, 1, 2, 3]  # ring of capacity 16


def test_hook_hetplug_replay_sample():
    pm = configured(["shep"])
    assert pm.hook.hetplug_replay_add(batch=make_batch(b=6, td=True)).shape == (6,)
    out = pm.hook.hetplug_replay_sample(batch_size=32, generator=torch.Generator().manual_seed(0), td_fn=None)
    assert isinstance(out, hetplug.SampleResult)
    assert out.indices.shape == out.weights.shape == (32,)
    assert int(out.indices.max()) < 6 and float(out.weights.max()) <= 1.0 + 1e-12


def test_hook_hetplug_update_priorities():
    pm = configured(["per"], {"per": {"priority_exponent": 1.0, "eps": 0.0}})
    idx = pm.hook.hetplug_replay_add(batch=make_batch(b=3))
    td = torch.tensor([[1.0, 1, 1, 1, 1], [2, 2, 2, 0, 0], [0, 0, 0, 0, 0.5]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    new = pm.hook.hetplug_update_priorities(indices=idx, td_error=-td, mask=mask)
    assert new.tolist() == pytest.approx([1.0, 2.0, 0.1])
    assert pm.get_plugin("per").sampler.priorities.tolist() == pytest.approx([1.0, 2.0, 0.1])


def test_hook_hetplug_auxiliary_losses(toy_entry_point):
    pm = configured(["toy"], {"toy": {"scale": 3.0}})
    out = pm.hook.hetplug_auxiliary_losses(batch=make_batch(), update=2)
    assert out == [{"toy/loss": torch.tensor(6.0)}]


def test_hook_hetplug_after_update(toy_entry_point):
    pm = configured(["toy"])
    assert pm.hook.hetplug_after_update(update=7) == [{"toy/update": 7}]


def test_third_party_plugin_found_through_entry_point(toy_entry_point):
    assert "toy" in hetplug.available_plugins()
    pm = configured(["toy"], {"toy": {"scale": 0.5}})
    plugin = pm.get_plugin("toy")
    assert isinstance(plugin, ToyPlugin) and plugin.config.scale == 0.5
    pm.hook.hetplug_after_update(update=1)
    assert plugin.calls == ["configure", "after_update"]


def test_unknown_plugin_name_lists_known_ones(toy_entry_point):
    with pytest.raises(ValueError) as err:
        hetplug.get_plugin_manager(["shpe"])
    msg = str(err.value)
    assert "'shpe'" in msg
    for name in [*BUILTIN_NAMES, "toy"]:
        assert name in msg


@pytest.mark.parametrize(
    "plugins, options, match, error",
    [
        (["shep"], {"shep": {"lamda_delta": 1.0}}, "unknown option shep.lamda_delta", ValueError),
        (["shep"], {"shep": {"priority_form": "max"}}, "priority_form", ValueError),
        (["per"], {"per": {"priority_exponent": -0.1}}, "priority_exponent must be >= 0", ValueError),
        (["per"], {"shep": {}}, "not selected: shep", ValueError),
        (["per"], {"per": [1, 2]}, "must be a mapping", TypeError),
        (["per", "shep"], None, "select only one", ValueError),
        (["per", "per"], None, "selected twice", ValueError),
    ],
)
def test_bad_selection_or_options_fail_at_build_time(plugins, options, match, error):
    with pytest.raises(error, match=match):
        hetplug.get_plugin_manager(plugins, options)


def test_check_pending_rejects_misspelled_hookimpl():
    class Typo:
        @hetplug.hookimpl
        def hetplug_after_updates(self, update):  # not a hook
            return None

    with pytest.raises(pluggy.PluginValidationError):
        hetplug.get_plugin_manager([Typo()])


def test_managers_are_independent():
    a = hetplug.get_plugin_manager(["per"])
    b = hetplug.get_plugin_manager([])
    assert a.get_plugin("per") is not None and b.get_plugin("per") is None
    assert b.hook.hetplug_replay_sample(batch_size=4, generator=None, td_fn=None) is None


def test_plugin_state_round_trip():
    pm = configured(["shep"])
    pm.hook.hetplug_replay_add(batch=make_batch(b=8, td=True))
    state = hetplug.plugin_state(pm)
    other = configured(["shep"])
    hetplug.load_plugin_state(other, state)
    a = pm.hook.hetplug_replay_sample(batch_size=16, generator=torch.Generator().manual_seed(1), td_fn=None)
    b = other.hook.hetplug_replay_sample(
        batch_size=16, generator=torch.Generator().manual_seed(1), td_fn=None
    )
    assert torch.equal(a.indices, b.indices) and torch.allclose(a.weights, b.weights)
    with pytest.raises(ValueError, match="not registered: shep"):
        hetplug.load_plugin_state(configured(["per"]), state)


def test_importing_hetplug_imports_no_framework():
    """The core stays framework-free: a fresh interpreter imports none of them."""
    code = (
        "import sys, hetplug, hetplug.shep, hetplug.replay, hetplug.spatial, hetplug.plugins;"
        "hetplug.get_plugin_manager(['shep']);"
        "bad = [m for m in ('torchrl', 'tensordict', 'benchmarl', 'sacred', 'vmas', 'pymarlzooplus')"
        " if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_a_plugin_installed_by_entry_point_is_used_like_a_built_in(installed_toy_plugins):
    """A distribution's entry point (no fixture patching hetplug) makes the plugin selectable
    by name, with options, beside the built-ins, which are registered the same way."""
    assert {"toy", "toy_replay", *BUILTIN_NAMES} <= set(hetplug.available_plugins())
    pm = configured(["toy_replay", "toy"], {"toy": {"scale": 2.0}})
    assert pm.hook.hetplug_replay_add(batch=make_batch(b=4)).tolist() == [0, 1, 2, 3]
    assert pm.hook.hetplug_after_update(update=1) == [{"toy/update": 1}, {"toy_replay/updates": 0}]
    with pytest.raises(ValueError, match="select only one"):
        hetplug.get_plugin_manager(["toy_replay", "per"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["per", "shep", "lbs"])
def test_sampled_weights_come_in_the_hosts_dtype(name, dtype):
    """IS weights and probabilities handed to a host are in HostSpec.dtype (the samplers
    keep float64 masses inside)."""
    pm = hetplug.get_plugin_manager([name])
    spec = hetplug.HostSpec(
        n_agents=3, max_steps=1 if name == "lbs" else 5, capacity=16, n_actions=4, dtype=dtype
    )
    pm.hook.hetplug_configure.call_historic(kwargs={"spec": spec})
    batch = make_batch(b=6, t=spec.max_steps, td=True)
    pm.hook.hetplug_replay_add(batch=batch)
    td_fn = (lambda sources, slots: torch.rand(3, sources.shape[0])) if name == "lbs" else None
    out = pm.hook.hetplug_replay_sample(batch_size=4, generator=torch.Generator().manual_seed(0), td_fn=td_fn)
    assert out.weights.dtype == out.probabilities.dtype == dtype


@pytest.mark.parametrize(
    "plugin, options",
    [
        ("per", {"check_inputs": False}),
        # Group-HER selects episodes on the host once per collected batch (documented): off here
        ("shep", {"grid_shape": (8, 8), "check_inputs": False, "group_her": False}),
        ("lbs", {"check_inputs": False}),
    ],
)
def test_per_step_hooks_make_no_host_round_trip_without_input_checks(plugin, options, monkeypatch):
    """With input checks off, the prioritisers' per-step hooks never turn a tensor into a
    Python value (what synchronises with a GPU; benchmarks/gpu.sh checks the same on CUDA
    with torch.cuda.set_sync_debug_mode)."""
    t = 1 if plugin == "lbs" else 6
    pm = hetplug.get_plugin_manager([plugin], {plugin: options})
    pm.hook.hetplug_configure.call_historic(
        kwargs={"spec": hetplug.HostSpec(n_agents=3, max_steps=t, capacity=16, n_actions=4)}
    )
    g = torch.Generator().manual_seed(0)
    batch = hetplug.TrajectoryBatch(
        reward=torch.rand(4, t, generator=g),
        mask=torch.ones(4, t, dtype=torch.bool),
        obs=torch.rand(4, t, 3, 5, generator=g),
        actions=torch.randint(0, 4, (4, t, 3), generator=g),
        positions=torch.rand(4, t, 3, 2, generator=g),
    )

    def step():
        pm.hook.hetplug_trajectories_collected(batch=batch)
        pm.hook.hetplug_replay_add(batch=batch)
        td_fn = lambda sources, slots: torch.rand(3, sources.shape[0], generator=g)  # noqa: E731
        sample = pm.hook.hetplug_replay_sample(batch_size=4, generator=g, td_fn=td_fn)
        if plugin != "lbs":
            td = torch.rand(4, t, generator=g)
            pm.hook.hetplug_update_priorities(indices=sample.indices, td_error=td, mask=None)
        return sample

    def refuse(*args, **kwargs):
        raise AssertionError("a per-step hook read a tensor back to the host")

    step()  # the first call builds cached constants (grid weights) on the host, once
    for name in ("item", "__bool__", "__int__", "__float__", "tolist", "nonzero"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    sample = step()
    monkeypatch.undo()
    assert sample.indices.shape[-1] == 4
