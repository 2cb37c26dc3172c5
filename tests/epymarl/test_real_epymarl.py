"""The adapter against a real EPyMARL checkout: its own ``src/main.py`` (through
``hetplug-epymarl``, or plain for the reference run) in a subprocess, when
``$HETPLUG_EPYMARL_SRC`` points at a checkout's ``src/``. The tests write a temporary
algorithm yaml (the user's one-line change) into the checkout's ``config/algs``.

This module imports no PyMARLzoo+: it runs wherever EPyMARL does.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from hetplug_epymarl import read_config
from hetplug_epymarl.cli import find_src

from .cases import (
    BAD,
    BAD_IDS,
    EXTRACTOR_TASKS,
    HETDPS,
    KEY,
    KEY3,
    ON_POLICY,
    check_env_fields,
    check_lbforaging_success,
    shep,
    slot_agent_matches_host_agent,
)

EPYMARL = os.environ.get("HETPLUG_EPYMARL_SRC")
needs_epymarl = pytest.mark.skipif(
    not EPYMARL, reason="set HETPLUG_EPYMARL_SRC to an EPyMARL checkout's src/"
)

REAL_RUNS = {
    "qmix-per": ("qmix", ["per"], {}, "hetplug/per/priority_mean"),
    "qmix-shep": ("qmix", shep(), {}, "hetplug/shep/moran_i"),
    "qmix-hetdps": ("qmix", {"plugins": ["hetdps"], "hetdps": HETDPS}, {"key": KEY3}, "hetplug/hetdps/n_groups"),
    "vdn-shep": ("vdn", shep(), {}, "hetplug/intrinsic_reward"),
    "vdn-hetdps": ("vdn", {"plugins": ["hetdps"], "hetdps": HETDPS}, {"key": KEY3}, "hetplug/hetdps/n_groups"),
    "iql-lbs-per-agent-reward": ("iql", ["lbs"], {"common_reward": False}, "hetplug/lbs/shared_fraction"),
    "mappo-per": ("mappo", ["per"], {}, "hetplug/per/priority_mean"),
    "mappo-shep": ("mappo", shep(), {}, "hetplug/shep/moran_i"),
    "mappo-shppo": ("mappo", {"plugins": ["shppo"]}, {"key": KEY3}, "hetplug/shppo/latent_loss"),
    "happo-shppo": ("mappo", {"plugins": ["shppo"]}, {"key": KEY3, "learner": "hetplug_happo"}, "happo_factor_mean"),
    "mappo-hetdps": ("mappo", {"plugins": ["hetdps"], "hetdps": HETDPS}, {"key": KEY3}, "hetplug/hetdps/n_groups"),
    "ippo-per-per-agent-reward": ("ippo", ["per"], {"common_reward": False}, "hetplug/per/priority_mean"),
}  # fmt: skip


def _with_hetplug(base: str, hetplug) -> str:
    """An algorithm yaml's text with the ``hetplug`` key appended (block style at the top)."""
    return f"{base}\n{yaml.safe_dump({'hetplug': hetplug}, default_flow_style=None)}"


def _algs_dir() -> Path:
    """The algorithm yamls: the EPyMARL checkout's, else PyMARLzoo+'s (the same format),
    found without importing it."""
    if EPYMARL:
        return find_src(EPYMARL) / "config" / "algs"
    spec = importlib.util.find_spec("pymarlzooplus")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needs an EPyMARL checkout ($HETPLUG_EPYMARL_SRC) or pymarlzooplus for its yamls")
    return Path(spec.submodule_search_locations[0]) / "config" / "algs"


def test_the_real_epymarl_harness_writes_the_key_users_write():
    """Runs everywhere: the yaml the real-EPyMARL tests append parses back to each case's
    settings on top of the algorithm's yaml."""
    for alg, hp, _, _ in REAL_RUNS.values():
        base = (_algs_dir() / f"{alg}.yaml").read_text()
        config = yaml.safe_load(_with_hetplug(base, hp))
        assert config == {**yaml.safe_load(base), "hetplug": hp}
        assert read_config(config["hetplug"]) is not None


def _epymarl_module(relative: str):
    """A module of the EPyMARL checkout loaded from its file (``modules/agents/rnn_agent.py``)
    without putting its ``src/`` on this process's ``sys.path``."""
    path = find_src(EPYMARL) / relative
    spec = importlib.util.spec_from_file_location(f"epymarl_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_epymarl
@pytest.mark.parametrize("use_rnn", [True, False], ids=["gru", "feed_forward"])
def test_real_epymarl_slot_agent_is_epymarls_rnn_agent(use_rnn):
    """Oracle: EPyMARL's own RNNAgent (modules/agents/rnn_agent.py) on slot 0's weights;
    use_rnn False is the form of its stock qmix.yaml and vdn.yaml."""
    slot_agent_matches_host_agent(_epymarl_module("modules/agents/rnn_agent.py").RNNAgent, use_rnn)


DRIVER = Path(__file__).with_name("real_driver.py")


def _src_copy(root: Path) -> Path:
    """A copy of the checkout's ``src/`` in ``root``: the tests write their algorithm yaml
    there, and EPyMARL's sacred observer writes beside it, so the checkout is never touched."""
    src = root / "epymarl" / "src"
    if not src.is_dir():
        shutil.copytree(find_src(EPYMARL), src, ignore=shutil.ignore_patterns("__pycache__"))
    return src


def _epymarl_run(
    root: Path,
    alg: str,
    hetplug=None,
    *,
    plain: bool = False,
    key: str = KEY,
    src: Path | None = None,
    env: str = "gymma",
    inspect: bool = False,
    transfer: bool = False,
    **overrides,
):
    """Run EPyMARL (a copy of the checkout's ``src/``, or ``src``) on lbforaging (or the
    SMAClite map ``key`` with ``env="smaclite"``) in ``root`` with ``alg``'s yaml plus
    ``hetplug: <hetplug>`` (no key when None); ``plain`` starts its ``main.py`` directly
    instead of ``hetplug-epymarl``, ``inspect`` through ``real_driver.py``, whose record is
    then returned third; ``transfer`` passes ``--transfer``. Returns ``(returncode,
    stdout + stderr[, record])``."""
    root.mkdir(parents=True, exist_ok=True)
    src = src or _src_copy(root)
    config = alg
    if hetplug is not None:
        config = f"hetplug_test_{alg}"
        base = (src / "config" / "algs" / f"{alg}.yaml").read_text()
        (src / "config" / "algs" / f"{config}.yaml").write_text(_with_hetplug(base, hetplug))
    settings = {
        "env_args.map_name" if env == "smaclite" else "env_args.key": key,
        "env_args.time_limit": 50,
        "t_max": 400,
        "batch_size": 4,
        "buffer_size": 16,
        "test_interval": 10**6,
        "test_nepisode": 1,
        "log_interval": 200,
        "runner_log_interval": 200,
        "learner_log_interval": 200,
        "seed": 1,
        "local_results_path": str(root / "results"),
        **ON_POLICY.get(alg, {}),
        **overrides,
    }
    record = root / "record.pt"
    if inspect:
        launcher = [str(DRIVER), str(src), str(record)]
    else:
        launcher = (
            [str(src / "main.py")] if plain else ["-m", "hetplug_epymarl.cli", "--epymarl-src", str(src)]
        )
    if transfer:
        launcher.append("--transfer")
    command = [sys.executable, *launcher, f"--config={config}", f"--env-config={env}", "with"]
    command += [f"{k}={v}" for k, v in settings.items()]
    out = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"},
    )
    if inspect:
        assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
        return out.returncode, out.stdout + out.stderr, torch.load(record, weights_only=False)
    return out.returncode, out.stdout + out.stderr


def _epymarl_models(root: Path) -> Path:
    """The latest saved step of the run in ``root``: the ``<t_env>`` folder holding
    ``agent.th`` (EPyMARL writes ``results/models/<token>/<t_env>``)."""
    return max((p.parent for p in root.glob("**/agent.th")), key=lambda p: int(p.name))


def _model_tensors(models: Path) -> dict[str, torch.Tensor]:
    return {f"{f.name}:{k}": v for f in sorted(models.glob("*.th")) for k, v in torch.load(f).items()}


@pytest.mark.slow
@needs_epymarl
@pytest.mark.parametrize("case", list(REAL_RUNS))
def test_real_epymarl_runs_each_plugin(tmp_path, case):
    """A few hundred lbforaging steps of EPyMARL with the plugin, its metrics in EPyMARL's log.
    HetDPS runs on the stock qmix.yaml and vdn.yaml (use_rnn: False) and regroups."""
    alg, hp, overrides, stat = REAL_RUNS[case]
    code, text = _epymarl_run(tmp_path, alg, hp, **overrides)
    assert code == 0, text[-4000:]
    assert "Beginning training" in text and stat in text, text[-4000:]
    if "hetdps" in case:
        assert "hetplug hetdps after update 2:" in text, text[-4000:]


@pytest.mark.slow
@needs_epymarl
def test_real_epymarl_without_the_key_matches_plain_epymarl(tmp_path):
    """Same seed: hetplug-epymarl on a config without the key saves the same parameters as
    EPyMARL's own main.py; with [per] they differ (the prioritised update really ran)."""
    runs = {}
    for name, plain, hp in (("plain", True, None), ("wrapped", False, None), ("per", False, ["per"])):
        code, text = _epymarl_run(
            tmp_path / name, "qmix", hp, plain=plain, save_model=True, save_model_interval=200
        )
        assert code == 0, text[-4000:]
        runs[name] = _epymarl_models(tmp_path / name)
    assert runs["plain"].name == runs["wrapped"].name
    plain, wrapped, per = (_model_tensors(runs[k]) for k in ("plain", "wrapped", "per"))
    assert plain and plain.keys() == wrapped.keys()
    for k in plain:
        torch.testing.assert_close(plain[k], wrapped[k], rtol=0, atol=0)
    assert any(not torch.equal(plain[k], per[k]) for k in plain)


@pytest.mark.slow
@needs_epymarl
@pytest.mark.parametrize("hp,message", BAD, ids=BAD_IDS)
def test_real_epymarl_bad_configs_fail_before_training(tmp_path, hp, message):
    code, text = _epymarl_run(tmp_path, "qmix", hp, t_max=100)
    assert code != 0 and re.search(message, text), text[-4000:]
    assert "Beginning training" not in text


@pytest.mark.slow
@needs_epymarl
def test_real_epymarl_checkpoint_carries_the_hetplug_state(tmp_path):
    hp = shep()
    code, text = _epymarl_run(tmp_path / "first", "qmix", hp, save_model=True, save_model_interval=200)
    assert code == 0, text[-4000:]
    models = _epymarl_models(tmp_path / "first")
    assert (models / "hetplug.th").is_file()
    checkpoint = tmp_path / "checkpoint"  # the token has spaces; a plain path for the command line
    shutil.copytree(models.parent, checkpoint)
    code, text = _epymarl_run(tmp_path / "again", "qmix", hp, t_max=100, checkpoint_path=checkpoint)
    assert code == 0, text[-4000:]
    (checkpoint / models.name / "hetplug.th").unlink()
    code, text = _epymarl_run(tmp_path / "bare", "qmix", ["per"], t_max=100, checkpoint_path=checkpoint)
    assert code != 0 and "hetplug.th not found" in text, text[-4000:]


@pytest.mark.slow
@needs_epymarl
def test_real_epymarl_auto_import_route(tmp_path):
    """The other entry: ``import hetplug_epymarl.auto`` first in (a copy of) src/main.py,
    then EPyMARL's own command line."""
    src = shutil.copytree(find_src(EPYMARL), tmp_path / "src", ignore=shutil.ignore_patterns("results"))
    main = src / "main.py"
    main.write_text("import hetplug_epymarl.auto  # noqa: F401\n" + main.read_text())
    code, text = _epymarl_run(tmp_path, "qmix", ["per"], plain=True, src=src)
    assert code == 0 and "hetplug/per/priority_mean" in text, text[-4000:]


@pytest.mark.slow
@needs_epymarl
def test_real_epymarl_happo_trains_without_the_key(tmp_path):
    """``learner=hetplug_happo`` (registered by the launcher) in a run without the key: the
    host's own run with hetplug's HAPPO learner, which logs its M factor."""
    code, text = _epymarl_run(tmp_path, "mappo", None, key=KEY3, learner="hetplug_happo")
    assert code == 0, text[-4000:]
    assert "Beginning training" in text and "happo_factor_mean" in text, text[-4000:]


#: (extractor, runner): SHEP with positions read by the extractor; SMAClite's opponents too
EXTRACTOR_RUNS = [("lbforaging", "episode"), ("lbforaging", "parallel"), ("rware", "episode"),
                  ("mpe", "episode"), ("smaclite", "episode")]  # fmt: skip


@pytest.mark.slow
@needs_epymarl
@pytest.mark.parametrize("task,runner", EXTRACTOR_RUNS, ids=["-".join(r) for r in EXTRACTOR_RUNS])
def test_real_epymarl_extractors_give_the_environments_agent_positions(tmp_path, task, runner):
    """EPyMARL's own runners and environments: what the plugins get, episode by episode,
    is what the environment object says after the reset and after each step (positions;
    SMAClite's alive masks, opponents and battle_won; lbforaging's success), and agrees with
    the agent's own coordinates in its observation. The IS exponent ends the run at 1."""
    key, obs_slice = EXTRACTOR_TASKS[task]
    hp = {
        "plugins": ["shep"],
        "positions": {"extractor": task},
        "shep": {"grid_low": [-1, -1], "grid_high": [32, 32], "grid_shape": [4, 4]},
    }
    settings = {"runner": runner, "batch_size_run": 2 if runner == "parallel" else 1, "t_max": 300}
    if task == "smaclite":
        hp["opponents"] = {"extractor": "smaclite"}
    env = "smaclite" if task == "smaclite" else "gymma"
    _, _, record = _epymarl_run(tmp_path, "qmix", hp, key=key, env=env, inspect=True, **settings)
    truth = record["truth"] if runner == "episode" else None
    seen = check_env_fields(record["batches"], truth, obs_slice)
    assert seen["episodes"] >= 4
    if task == "smaclite":
        assert seen["dead"] > 0 and "alive" in record["batches"][0]  # units died and were masked
    if task in ("lbforaging", "smaclite") and runner == "episode":
        assert seen["success"] and "success" in record["batches"][0]
    if task == "lbforaging":  # the observation agrees on success, in both runners
        assert check_lbforaging_success(record["batches"])
    assert record["facts"]["is_beta"] == 1.0


@pytest.mark.slow
@needs_epymarl
@pytest.mark.parametrize("hp", [None, {"plugins": ["shppo"]}], ids=["stock-rnn", "shppo"])
def test_real_epymarl_zero_shot_team_size(tmp_path, hp):
    """Trained with 2 agents on rware (a fixed-size local view; agent ids off), the saved
    agent is evaluated with 3 and with 1 agent by ``hetplug-epymarl --transfer``, without
    training."""
    rware = "rware:rware-tiny-{}ag-v2"
    common = {"obs_agent_id": False, "save_model": True, "save_model_interval": 200}
    code, text = _epymarl_run(tmp_path / "train", "mappo", hp, key=rware.format(2), **common)
    assert code == 0, text[-4000:]
    models = _epymarl_models(tmp_path / "train")
    checkpoint = tmp_path / "checkpoint"  # the token has spaces; a plain path for the command line
    shutil.copytree(models.parent, checkpoint)
    for n in (3, 1):
        code, text = _epymarl_run(
            tmp_path / f"eval{n}", "mappo", hp, key=rware.format(n), transfer=True, obs_agent_id=False,
            checkpoint_path=checkpoint, evaluate=True, test_nepisode=2,
        )  # fmt: skip
        assert code == 0, text[-4000:]
        assert "Finished Evaluation" in text and "test_return_mean" in text, text[-4000:]
        assert "Beginning training" not in text


@pytest.mark.slow
@needs_epymarl
def test_real_epymarl_lbs_keeps_one_team_reward_statistic(tmp_path):
    """IQL + LBS with team rewards (common_reward=True): EPyMARL's reward statistic stays
    one scalar (rew_ms (1,)), not one per column of LBS's mixed batches."""
    _, _, record = _epymarl_run(tmp_path, "iql", ["lbs"], inspect=True)
    assert record["facts"]["updates"] > 0 and record["facts"]["rew_ms_shape"] == (1,)
