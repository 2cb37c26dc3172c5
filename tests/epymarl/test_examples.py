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


ON_POLICY_LEARNERS = ("ppo_learner", "hetplug_happo")
SHPPO_ABLATIONS = {
    "zero_latent_inputs": ("zero_latent_inputs", True),
    "zero_latents": ("zero_latents", True),
    "no_value_loss": ("value_loss", False),
    "no_entropy_loss": ("entropy_loss", False),
    "no_distance_loss": ("distance_loss", False),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "qmix_per.yaml",
        "qmix_shep.yaml",
        "qmix_hetdps.yaml",
        "mappo_shppo.yaml",
        "happo.yaml",
        "happo_shppo.yaml",
    ],
)
def test_example_configs_run(host, name):
    """Each example yaml, as a whole (its algorithm settings and its hetplug block), runs a
    few hundred steps on the host; only the sizes are shrunk for the test."""
    config = yaml.safe_load((EXAMPLES / name).read_text())
    hp = config.pop("hetplug", None)
    plugins = read_config(hp).plugins if hp is not None else ()
    base = "mappo" if config["learner"] in ON_POLICY_LEARNERS else "qmix"
    if "hetdps" in plugins:
        hp["hetdps"]["interval"] = 2  # a regrouping within the test's few updates
    sizes = {"batch_size": 4, "buffer_size": 16, **ON_POLICY.get(base, {})}
    session = host.run(base, hp, t_max=300, key=KEY if "shep" in plugins else KEY3, **{**config, **sizes})
    if not plugins:  # no hetplug key: the host's own run, with hetplug's learner
        assert config["learner"] == "hetplug_happo" and "happo_factor_mean" in host.info(Path.cwd())
        return
    assert session.config.plugins == plugins and session.updates > 0
    if "hetdps" in plugins:
        assert session.plans


@pytest.mark.parametrize("name", sorted(SHPPO_ABLATIONS))
def test_shppo_ablation_configs_change_one_option(name):
    """Each ablation yaml of section V-E is happo_shppo.yaml with exactly its option
    changed, and the agent the adapter builds from it carries the switch."""
    from hetplug_epymarl.wiring.shppo import SHPPOWiring

    base = yaml.safe_load((EXAMPLES / "happo_shppo.yaml").read_text())
    config = yaml.safe_load((EXAMPLES / f"happo_shppo_{name}.yaml").read_text())
    option, value = SHPPO_ABLATIONS[name]
    assert config.pop("name") == f"hetplug_happo_shppo_{name}" and base.pop("name") == "hetplug_happo_shppo"
    options = config["hetplug"]["shppo"]
    assert options.pop(option) is value and config == base
    wiring = SHPPOWiring(
        read_config(yaml.safe_load((EXAMPLES / f"happo_shppo_{name}.yaml").read_text())["hetplug"]).options[
            "shppo"
        ]
    )
    agent_mac = wiring.mac_class(type("Base", (), {"n_agents": 3}))
    agent = agent_mac.__new__(agent_mac)
    agent.args = type("Args", (), {"n_agents": 3, "hidden_dim": 8, "n_actions": 5})()
    agent._build_agents(6)
    assert agent.agent.latent_net.zero_inputs is (option == "zero_latent_inputs")
    assert agent.agent.actor.zero_latents is (option == "zero_latents")
    assert getattr(wiring.config, option) is value


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
