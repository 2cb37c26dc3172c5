"""Zero-shot team size in EPyMARL (``hetplug-epymarl --transfer``, ``install(transfer=True)``):
a model trained with 2 agents is evaluated with 1 and 3 agents without training, for
SHPPO's agent and for the host's parameter-shared rnn agent, on rware (its observation,
a local view, has the same size for any team)."""

from __future__ import annotations

import pytest
import torch

import hetplug_epymarl
from hetplug_epymarl import cli

from .cases import KEY3, ON_POLICY

RWARE = "rware:rware-tiny-{}ag-v2"
AGENTS = {"stock": None, "shppo": {"plugins": ["shppo"], "shppo": {"latent_dim": 2}}}
SMALL = {"obs_agent_id": False, **ON_POLICY["mappo"]}  # agent inputs that do not grow with the team


def _train(host, root, hetplug):
    """Two agents, a few episodes, models saved; returns the models folder."""
    host.run(
        "mappo", hetplug, key=RWARE.format(2), t_max=220, save_model=True, save_model_interval=100, **SMALL
    )
    return sorted(root.glob("results/sacred/**/models"))[-1]


def _evaluate(host, models, key, hetplug, **extra):
    hetplug_epymarl.install("pymarlzooplus", transfer=True)
    try:
        return host.run("mappo", hetplug, key=key, checkpoint_path=str(models), evaluate=True, test_nepisode=2,
                        **{**SMALL, **extra})  # fmt: skip
    finally:
        hetplug_epymarl.install("pymarlzooplus", transfer=False)


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_a_two_agent_model_is_evaluated_with_one_and_three_agents(host, tmp_path, agent):
    hetplug = AGENTS[agent]
    models = _train(host, tmp_path, hetplug)
    saved_dir = sorted(models.iterdir(), key=lambda p: int(p.name))[-1]
    saved = torch.load(saved_dir / "agent.th")
    for n in (1, 3):
        _evaluate(host, models, RWARE.format(n), hetplug)
        learner = hetplug_epymarl.last_transfer()
        assert learner.loaded_from == str(saved_dir) and learner.n_agents == n
        for k, v in learner.mac.agent.state_dict().items():  # the trained agent, untouched
            torch.testing.assert_close(v, saved[k], rtol=0, atol=0)
        info = host.info(tmp_path)
        assert "test_return_mean" in info and "pg_loss" not in info  # evaluated, not trained
        if agent == "shppo":
            assert type(learner.mac.agent).__name__ == "SHPPOAgent"
            assert hetplug_epymarl.last_session().updates == 0


def test_what_cannot_transfer_is_refused_by_name(host, tmp_path, capfd):
    """An observation that changes size with the team (here lbforaging's, which lists every
    player) cannot feed the saved agent: refused, naming the parameter; ``--transfer``
    without ``evaluate=True`` or a checkpoint is refused before anything is built."""
    models = _train(host, tmp_path, None)
    hetplug_epymarl.install("pymarlzooplus", transfer=True)
    try:
        text = host.fails(
            capfd, "the saved agent does not fit this team", "mappo", None, key=KEY3,
            checkpoint_path=str(models), evaluate=True, test_nepisode=1, **SMALL,
        )  # fmt: skip
        assert "fc1.weight" in text and "lbforaging" in text
        host.fails(capfd, "set evaluate=True", "mappo", None, key=KEY3, checkpoint_path=str(models), **SMALL)
        host.fails(capfd, "set checkpoint_path", "mappo", None, key=KEY3, evaluate=True, **SMALL)
    finally:
        hetplug_epymarl.install("pymarlzooplus", transfer=False)


def test_the_launcher_flag_turns_transfer_on(monkeypatch, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.py").write_text("")
    (src / "run.py").write_text("")
    seen = {}
    monkeypatch.setattr(
        hetplug_epymarl, "install", lambda host, transfer=False: seen.update(transfer=transfer)
    )
    monkeypatch.setattr(cli.runpy, "run_path", lambda path, run_name: seen.update(argv=list(cli.sys.argv)))
    monkeypatch.setattr(cli.sys, "path", list(cli.sys.path))
    monkeypatch.setattr(cli.sys, "argv", list(cli.sys.argv))
    cli.main(["--transfer", "--epymarl-src", str(src), "--config=mappo", "with", "evaluate=True"])
    assert seen["transfer"] is True and seen["argv"][1:] == ["--config=mappo", "with", "evaluate=True"]
