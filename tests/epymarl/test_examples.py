"""examples/epymarl: every yaml runs whole on the host (only sizes shrunk), and the
PyMARLzoo+ script runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

import hetplug_epymarl
from hetplug_epymarl import read_config

from .cases import KEY, KEY3, ON_POLICY

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "epymarl"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["qmix_per.yaml", "qmix_shep.yaml", "qmix_hetdps.yaml", "mappo_shppo.yaml"])
def test_example_configs_run(host, name):
    """Each example yaml, as a whole (its algorithm settings and its hetplug block), runs a
    few hundred steps on the host; only the sizes are shrunk for the test."""
    config = yaml.safe_load((EXAMPLES / name).read_text())
    hp = config.pop("hetplug")
    plugins = read_config(hp).plugins
    base = "mappo" if config["learner"] == "ppo_learner" else "qmix"
    if "hetdps" in plugins:
        hp["hetdps"]["interval"] = 2  # a regrouping within the test's few updates
    sizes = {"batch_size": 4, "buffer_size": 16, **ON_POLICY.get(base, {})}
    session = host.run(base, hp, t_max=300, key=KEY if "shep" in plugins else KEY3, **{**config, **sizes})
    assert session.config.plugins == plugins and session.updates > 0
    if "hetdps" in plugins:
        assert session.plans


@pytest.mark.slow
def test_pymarlzooplus_example_runs(host, capsys):
    sys.path.insert(0, str(EXAMPLES))
    try:
        import run_pymarlzooplus
    finally:
        sys.path.remove(str(EXAMPLES))
    run_pymarlzooplus.main(["--plugin", "shep", "--t-max", "450"])
    assert "hetplug: {" in capsys.readouterr().out
    session = hetplug_epymarl.last_session()
    assert session.updates > 0 and session.config.plugins == ("shep",)
