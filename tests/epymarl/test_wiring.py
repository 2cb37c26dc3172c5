"""Which wiring a run gets: chosen by what the plugins implement, so a plugin installed by
entry point is wired exactly like a built-in, with no adapter edit; and the adapter uses
only hetplug's public surface (the hooks, never a plugin's attributes)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
import torch

import hetplug
import hetplug_epymarl
from hetplug_epymarl import read_config
from hetplug_epymarl.metrics import MetricsLog
from hetplug_epymarl.wiring import select
from hetplug_epymarl.wiring.hetdps import HetDPSWiring
from hetplug_epymarl.wiring.lbs import SharedReplay
from hetplug_epymarl.wiring.per import PrioritisedReplay
from hetplug_epymarl.wiring.shep import Collection
from hetplug_epymarl.wiring.shppo import AuxiliaryLosses, SHPPOWiring

ADAPTER = Path(hetplug_epymarl.__file__).parent


def _roles(plugins, config=None):
    config = config or read_config({"plugins": plugins, "positions": {"extractor": "lbforaging"}})
    wiring = select(hetplug.get_plugin_manager(plugins, dict(config.options)), config, 0, MetricsLog(1))
    return tuple(type(part) if part is not None else None for part in vars(wiring).values()), wiring


@pytest.mark.parametrize(
    "plugins,roles",
    [
        (["per"], (PrioritisedReplay, Collection, None, None)),  # per empties rollouts when collected
        (["shep"], (PrioritisedReplay, Collection, None, None)),
        (["lbs"], (SharedReplay, None, None, None)),
        (["hetdps"], (None, Collection, None, HetDPSWiring)),
        (["shppo"], (None, None, AuxiliaryLosses, SHPPOWiring)),
        (["shppo", "per"], (PrioritisedReplay, Collection, AuxiliaryLosses, SHPPOWiring)),
    ],
)
def test_builtins_get_the_wiring_of_what_they_implement(plugins, roles):
    """Roles are (replay, collection, auxiliary, agent)."""
    assert _roles(plugins)[0] == roles


def test_entry_point_plugins_are_wired_by_capability(installed_toy_plugins):
    """``toy_replay`` (a third-party prioritiser) gets prioritised replay, ``toy`` the
    collection and auxiliary-loss wiring: the adapter never names them."""
    roles, wiring = _roles(["toy_replay", "toy"])
    assert roles == (PrioritisedReplay, Collection, AuxiliaryLosses, None)
    assert wiring.replay.name == "toy_replay"


class SharingPrioritiser:
    """A third-party experience-sharing prioritiser: its replay_sample takes td_fn."""

    @hetplug.hookimpl
    def hetplug_replay_add(self, batch):
        return torch.arange(batch.batch_size)

    @hetplug.hookimpl
    def hetplug_replay_sample(self, batch_size, generator, td_fn):
        return None


def test_a_sharing_prioritiser_is_recognised_by_its_td_fn_argument():
    pm = hetplug.get_plugin_manager([SharingPrioritiser()])
    wiring = select(pm, hetplug.HetplugConfig(), 0, MetricsLog(1))
    assert isinstance(wiring.replay, SharedReplay) and wiring.collection is None


@pytest.mark.slow
def test_entry_point_plugins_run_in_a_real_host(installed_toy_plugins, host, tmp_path):
    """``hetplug: [toy_replay, toy]`` on PyMARLzoo+'s QMIX: the third-party prioritiser
    stores and samples every episode and gets every TD update; the other plugin's
    intrinsic reward, auxiliary loss and metrics reach the host, as a built-in's would."""
    session = host.run("qmix", ["toy_replay", "toy"], learner_log_interval=50)
    replay, toy = session.pm.get_plugin("toy_replay"), session.pm.get_plugin("toy")
    episodes = 9
    assert len(replay.sampler) == session.buffer.episodes_in_buffer == episodes
    assert replay.updates == session.updates == episodes - 4 + 1
    assert replay.host is not None and toy.host is not None  # hetplug_bind reached both
    assert toy.calls[:3] == ["configure", "bind", "collected"]
    assert toy.calls.count("auxiliary") == toy.calls.count("after_update") == session.updates
    info = host.info(tmp_path)
    assert info["hetplug/toy_replay/updates"][-1] == session.updates
    assert info["hetplug/toy/update"][-1] == session.updates
    assert set(info["hetplug/intrinsic_reward"]) == {1.0}  # toy's bonus: scale 1 per valid step


PUBLIC = {"hetplug", "hetplug.config", "hetplug.metrics", "hetplug.state", "hetplug.sharing", "hetplug.shppo"}


def _imports():
    for path in sorted(ADAPTER.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "hetplug":
                yield path.relative_to(ADAPTER), node.module, [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "hetplug":
                        yield path.relative_to(ADAPTER), alias.name, []


def test_the_adapter_imports_only_hetplugs_public_names():
    found = list(_imports())
    assert found
    for path, module, names in found:
        assert module in PUBLIC, f"{path} imports {module}"
        public = getattr(importlib.import_module(module), "__all__", None)
        if public is not None:
            assert set(names) <= set(public), f"{path}: {set(names) - set(public)} not in {module}.__all__"


def test_the_adapter_reaches_plugins_only_through_hooks():
    """No ``pm.get_plugin``, and none of the built-ins' attributes (a third-party plugin
    has none of them)."""
    for path in sorted(ADAPTER.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                assert node.attr not in {"get_plugin", "sampler", "sharing", "bind"}, (
                    f"{path.relative_to(ADAPTER)}:{node.lineno} uses .{node.attr}"
                )
