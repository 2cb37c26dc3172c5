"""The ``hetplug`` key: hetplug's one configuration language (hetplug.parse_config), with
what EPyMARL cannot do refused before anything is built."""

from __future__ import annotations

import pytest

import hetplug
import hetplug_epymarl
from hetplug_epymarl import read_config
from hetplug_epymarl.positions import check_source

from .cases import BAD, BAD_IDS, SELF_POS, SHEP


@pytest.mark.parametrize("hp,message", BAD, ids=BAD_IDS)
def test_bad_configs_fail_before_training(host, hp, message, capfd):
    before = hetplug_epymarl.last_session()
    host.fails(capfd, message, "qmix", hp, t_max=100)
    session = hetplug_epymarl.last_session()
    assert session is before or (session.learner is None and session.updates == 0)
    assert host.prun.ReplayBuffer.__module__.startswith("pymarlzooplus")  # host's class is back


@pytest.mark.parametrize(
    "hp,message",
    [
        ({"plugins": ["per"], "shep": {}}, "unknown key hetplug.shep"),
        ({"plugins": "per", "per": [1]}, "hetplug.per must be a mapping"),
        (3, "hetplug must be a list of plugin names or a mapping"),
        ({"plugins": ["shep"], "positions": {"key": "info"}}, "hetplug.positions.key must be 'obs' or 'state'"),
        ({"plugins": ["shep"], "positions": {"slice": [2, 2]}}, r"hetplug.positions.slice"),
        ({"plugins": ["shep"], "positions": {"slice": [0, 3], "dim": 2}}, "hetplug.positions.dim"),
        ({"plugins": ["shep"], "positions": {"sliced": [0, 2]}}, "unknown key hetplug.positions.sliced"),
        ({"plugins": ["shep"], "positions": {"group": "blue"}}, "hetplug.positions.group names a BenchMARL"),
        ({"plugins": ["per"], "replay_window": 4}, "hetplug.replay_window is BenchMARL's"),
        # where an earlier hetplug_epymarl read positions, and its spelling of the key
        ({"plugins": ["shep"], "shep": {"positions": {"slice": [9, 11]}}}, "hetplug.shep.positions is now hetplug.positions"),
        ({"plugins": ["shep"], "positions": {"source": "obs"}}, "hetplug.positions.source is now hetplug.positions.key"),
    ],
)  # fmt: skip
def test_config_errors_name_the_key(hp, message):
    error = TypeError if "must be a mapping" in message or "must be a list" in message else ValueError
    with pytest.raises(error, match=message):
        read_config(hp)


def test_config_forms():
    """The list shorthand, the full mapping, and the forms that select no plugin (the host
    then runs untouched, as ``plugins: []`` does in every host)."""
    for empty in (None, [], {}, {"plugins": []}):
        assert read_config(empty) is None
    assert read_config(["per"]).plugins == ("per",) == read_config("per").plugins
    config = read_config(
        {
            "plugins": ["shep"],
            "shep": SHEP,
            "positions": {"key": "obs", "slice": SELF_POS},
            "opponents": {"key": "state", "slice": [0, 4]},
        }
    )
    assert config.positions.slice == (9, 11) and config.opponents.key == "state"
    assert "positions" not in config.options["shep"] and config.options["shep"]["grid_shape"] == [8, 8]
    assert config == hetplug.parse_config(config.as_dict())  # the core's own round trip


def test_position_slices_are_checked_against_the_environment():
    scheme = {"obs": {"vshape": 15, "group": "agents"}, "state": {"vshape": (30,)}}
    ok = hetplug.PositionSource(key="state", slice=(0, 4))
    check_source(ok, "positions", scheme, n_agents=2, per_agent=True)  # 2 agents x 2 coordinates
    with pytest.raises(
        ValueError, match=r"hetplug.positions.slice=\[0, 4\] must hold n_agents x dim = 3 x 2"
    ):
        check_source(ok, "positions", scheme, n_agents=3, per_agent=True)
    with pytest.raises(ValueError, match=r"hetplug.opponents.slice=\[28, 32\] is out of range: state has 30"):
        check_source(hetplug.PositionSource(key="state", slice=(28, 32)), "opponents", scheme, 2, False)
    with pytest.raises(ValueError, match="hetplug.opponents.agent=2 is out of range: the task has 2 agents"):
        check_source(hetplug.PositionSource(key="obs", agent=2), "opponents", scheme, 2, False)
