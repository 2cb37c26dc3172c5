"""The one configuration language (hetplug.config), metric names and versioned states."""

from __future__ import annotations

import pytest
import torch

import hetplug
from hetplug.config import PositionSource, parse_config
from hetplug.metrics import metric_name, scalar_metrics
from hetplug.sharing import SharingPlan


def test_list_shorthand_and_full_form_parse_to_the_same_config():
    short = parse_config(["shep", "hetdps"])
    full = parse_config({"plugins": ["shep", "hetdps"], "shep": {}, "hetdps": None})
    assert short.plugins == full.plugins == ("shep", "hetdps")
    assert parse_config("per").plugins == ("per",)
    assert parse_config(None) == parse_config([]) == parse_config({}) == hetplug.HetplugConfig()


def test_full_form_keeps_every_section():
    cfg = parse_config(
        {
            "plugins": ["shep"],
            "shep": {"grid_shape": [4, 4]},
            "positions": {"key": "obs", "slice": [2, 4]},
            "opponents": {"group": "adversary", "slice": [0, 2]},
            "replay_window": 3,
        }
    )
    assert cfg.options == {"shep": {"grid_shape": [4, 4]}}
    assert cfg.positions == PositionSource(key="obs", slice=(2, 4))
    assert cfg.opponents.group == "adversary" and cfg.replay_window == 3
    assert parse_config(cfg.as_dict()) == cfg  # the full form round-trips


@pytest.mark.parametrize(
    "value, match, error",
    [
        ({"plugins": ["shepp"]}, r"unknown hetplug plugin 'shepp' in hetplug.plugins \(did you mean 'shep'\?\)", ValueError),
        ({"plugins": ["shep"], "shpe": {}}, r"unknown key hetplug.shpe \(did you mean 'shep'\?\)", ValueError),
        ({"plugins": ["shep"], "shep": {"grid_shpe": [2, 2]}}, r"unknown option hetplug.shep.grid_shpe \(did you mean 'grid_shape'\?\)", ValueError),
        ({"plugins": ["shep"], "shep": {"priority_form": "max"}}, "hetplug.shep: priority_form must be one of", ValueError),
        ({"plugins": ["shep"], "shep": [1]}, r"hetplug.shep must be a mapping of options, got hetplug.shep=\[1\]", TypeError),
        ({"plugins": "shep", "positions": {"slice": [3, 1]}}, r"hetplug.positions.slice must be \[start, stop\]", ValueError),
        ({"plugins": ["shep"], "positions": {"slise": [0, 2]}}, r"unknown key hetplug.positions.slise \(did you mean 'slice'\?\)", ValueError),
        ({"plugins": ["shep"], "positions": {"slice": [0, 3], "dim": 2}}, "hetplug.positions.dim must be an integer >= 1 dividing", ValueError),
        ({"plugins": ["shep"], "replay_window": 0}, "hetplug.replay_window must be an integer >= 1, got hetplug.replay_window=0", ValueError),
        ({"plugins": [1]}, "hetplug.plugins must be a list of plugin names", TypeError),
        (42, "hetplug must be a list of plugin names or a mapping", TypeError),
    ],
)  # fmt: skip
def test_bad_configs_name_the_key_and_the_value(value, match, error):
    with pytest.raises(error, match=match):
        parse_config(value)


def test_position_extractors():
    """``{extractor: <name>}``: positions read from the environment object by a named
    extractor (EPyMARL's lbforaging, mpe, rware, smaclite) instead of a batch entry's slice;
    the name is checked, and it replaces key and slice."""
    source = PositionSource.parse({"extractor": "lbforaging"}, "hetplug.positions")
    assert source.extractor == "lbforaging"
    cfg = parse_config(
        {"plugins": ["shep"], "positions": {"extractor": "smaclite"}, "opponents": {"extractor": "smaclite"}}
    )
    assert cfg.as_dict()["positions"] == {"extractor": "smaclite"}
    assert parse_config(cfg.as_dict()) == cfg
    assert set(hetplug.config.POSITION_EXTRACTORS) == {"lbforaging", "mpe", "rware", "smaclite"}
    with pytest.raises(
        ValueError,
        match=r"hetplug.positions.extractor='lbforagin' \(did you mean 'lbforaging'\?\).*lbforaging, mpe, rware, smaclite",
    ):
        PositionSource.parse({"extractor": "lbforagin"}, "hetplug.positions")
    with pytest.raises(
        ValueError,
        match=r"hetplug.positions.extractor replaces key and slice: give one or the other \(got slice\)",
    ):
        PositionSource.parse({"extractor": "rware", "slice": [0, 2]}, "hetplug.positions")


def test_position_key_forms():
    assert PositionSource.parse({"key": ["info", "pos"]}, "p").key == ("info", "pos")
    assert PositionSource.parse({"key": "info/pos"}, "p").key == ("info", "pos")
    assert PositionSource.parse({"key": ["observation"]}, "p").key == "observation"
    assert PositionSource.parse({"slice": [0, 6], "dim": 3}, "p").entity_dim == 3
    assert PositionSource().entity_dim == 2


def test_metric_names_are_hetplug_method_name():
    assert metric_name("shep/moran_i") == "hetplug/shep/moran_i"
    assert metric_name("shep/moran_i", group="blue") == "hetplug/shep/blue/moran_i"
    plan = SharingPlan((0, 1, 1), (0, 0, 0), (0, 1, 1), "split", (), 3)
    values = {
        "shep/moran_i": torch.tensor(0.5),
        "shep/stored": 7,
        "shep/priorities": torch.rand(7),  # a vector is not a metric
        "hetdps/distance": torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [2.0, 3.0, 0.0]]),
        "flag": True,
    }
    out = scalar_metrics(values)
    assert out["hetplug/shep/moran_i"] == 0.5 and out["hetplug/shep/stored"] == 7.0
    assert {k: v for k, v in out.items() if "distance" in k} == {
        "hetplug/hetdps/distance/0_1": 1.0,
        "hetplug/hetdps/distance/0_2": 2.0,
        "hetplug/hetdps/distance/1_2": 3.0,
    }
    assert not any("priorities" in k or "flag" in k for k in out)
    assert scalar_metrics({"hetdps/plan": plan}) == {
        f"hetplug/hetdps/plan/agent_{i}": float(s) for i, s in enumerate(plan.assignment)
    }


@pytest.mark.parametrize("name", ["per", "shep", "lbs", "hetdps", "shppo"])
def test_every_plugin_state_carries_a_format_version(name):
    from hetplug.shppo import LatentNet

    pm = hetplug.get_plugin_manager([name])
    pm.hook.hetplug_configure.call_historic(
        kwargs={"spec": hetplug.HostSpec(n_agents=2, max_steps=3, capacity=8, n_actions=2)}
    )
    if name == "shppo":
        pm.hook.hetplug_bind(host=hetplug.HostObjects(latent_net=LatentNet(4)))
    state = hetplug.plugin_state(pm)[name]
    assert state["format_version"] == 1
    hetplug.load_plugin_state(pm, {name: state})  # the current format loads
    unversioned = {k: v for k, v in state.items() if k != "format_version"}
    hetplug.load_plugin_state(pm, {name: unversioned})  # format 0: same content
    with pytest.raises(ValueError, match=f"{name} state has format_version=99"):
        hetplug.load_plugin_state(pm, {name: {**state, "format_version": 99}})
