"""The EPyMARL adapter against a real host: PyMARLzoo+ (pymarlzooplus on PyPI, EPyMARL's
tree under a package name) on lbforaging, and a real EPyMARL checkout when
$HETPLUG_EPYMARL_SRC points at one (see the end of this file)."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch

import hetplug_epymarl
from hetplug_epymarl.cli import find_src
from hetplug_epymarl.learner import check_host_learner, weighted_ppo_update, weighted_q_update
from hetplug_epymarl.settings import parse_settings

prun = pytest.importorskip("pymarlzooplus.run", reason="the test extra installs pymarlzooplus (README)")
from pymarlzooplus import pymarlzooplus  # noqa: E402

KEY = "lbforaging:Foraging-8x8-2p-3f-v3"  # obs per agent: 3 foods x (y, x, level), then players
SELF_POS = [9, 11]  # the agent's own (y, x): the first player block
SHEP = {
    "positions": {"source": "obs", "slice": SELF_POS},
    "grid_low": [0, 0],
    "grid_high": [7, 7],
    "grid_shape": [8, 8],
    "intrinsic_reward": True,
}


@pytest.fixture(autouse=True)
def _fast_host(monkeypatch, tmp_path):
    """PyMARLzoo+ sleeps 10 s and draws plots after each run; tests skip both. Its sacred
    observer writes under the caller's directory: the test's tmp_path."""
    monkeypatch.setattr(prun, "time", types.SimpleNamespace(time=time.time, sleep=lambda s: None))
    monkeypatch.setattr(prun, "plot_single_experiment_results", lambda *a, **k: None)
    monkeypatch.chdir(tmp_path)


def run_host(
    config: str = "qmix", hetplug=None, t_max: int = 400, seed: int = 1, key: str = KEY, **algo
) -> None:
    algo_args = {
        "t_max": t_max,
        "batch_size": 4,
        "buffer_size": 16,
        "test_interval": 10**6,
        "test_nepisode": 1,
        "log_interval": 200,
        "learner_log_interval": 200,
        "runner_log_interval": 200,
        "save_model": False,
        **algo,
    }
    if hetplug is not None:
        algo_args["hetplug"] = hetplug
    pymarlzooplus(
        {
            "config": config,
            "env-config": "gymma",
            "env_args": {"key": key, "time_limit": 50, "seed": seed},
            "algo_args": algo_args,
        }
    )


def run_fails(capfd, message: str, *args, **kwargs) -> str:
    """Run the host expecting a failure; sacred prints the error and exits with 1."""
    capfd.readouterr()
    with pytest.raises(SystemExit) as exc:
        run_host(*args, **kwargs)
    assert exc.value.code == 1
    out = capfd.readouterr()
    text = out.out + out.err
    assert re.search(message, text), text[-3000:]
    assert "Beginning training" not in text
    return text


def run_dirs(root: Path) -> list[Path]:
    return sorted((p.parent for p in root.glob("results/sacred/**/info.json")), key=lambda p: int(p.name))


CASES = [
    ("qmix", "per"),
    ("vdn", "shep"),
    ("iql", "per"),
    ("qmix", "shep"),
    ("mappo", "shep"),
    ("ippo", "per"),
]
#: on-policy runs: the buffer holds the current rollout (4 episodes, trained on once each
#: iteration); the episode runner keeps the test free of worker processes
ON_POLICY = {name: {"runner": "episode", "batch_size_run": 1, "buffer_size": 4} for name in ("mappo", "ippo")}


@contextlib.contextmanager
def host_in(root: Path):
    """Module-scoped runs: the same fast-host patches as ``_fast_host``, in ``root``."""
    hetplug_epymarl.install("pymarlzooplus")
    mp = pytest.MonkeyPatch()
    mp.setattr(prun, "time", types.SimpleNamespace(time=time.time, sleep=lambda s: None))
    mp.setattr(prun, "plot_single_experiment_results", lambda *a, **k: None)
    mp.chdir(root)
    try:
        yield root
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One short run per (algorithm, plugin): QMIX+PER, VDN+SHEP, IQL+PER, QMIX+SHEP, ..."""
    out = {}
    with host_in(tmp_path_factory.mktemp("runs")) as root:
        for config, plugin in CASES:
            hp = {"plugins": [plugin], **({"shep": SHEP} if plugin == "shep" else {})}
            run_host(config, hp, **ON_POLICY.get(config, {}))
            info = json.loads((run_dirs(root)[-1] / "info.json").read_text())
            out[config, plugin] = (hetplug_epymarl.last_session(), info)
    return out


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_priorities_are_per_episode_and_change(runs, case):
    session, info = runs[case]
    p = session.priorities()
    episodes = 9  # 400 steps / 50 + 1 (the host's loop runs while t_env <= t_max)
    assert p.numel() == session.buffer.episodes_in_buffer == min(episodes, session.buffer.buffer_size)
    assert session.updates == episodes - 4 + 1  # training starts once batch_size=4 episodes are stored
    # Updated priorities are |TD|-driven: not all equal to the initial max priority.
    assert torch.unique(p).numel() > 2
    assert session.pm.get_plugin(case[1]).sampler._sample_calls == session.updates


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_metrics_reach_the_hosts_logger(runs, case):
    _, info = runs[case]
    assert "hetplug_priority_mean" in info and "hetplug_stored" in info
    if case[1] == "shep":
        for name in ("moran_i", "occupancy_entropy", "action_diversity"):
            assert f"hetplug_shep_{name}" in info
        assert "hetplug_intrinsic_reward" in info


def test_shep_reads_the_configured_position_slice(runs):
    session, _ = runs["qmix", "shep"]
    buf = session.buffer
    tb = session.trajectory_batch(buf[:2])
    torch.testing.assert_close(tb.positions, buf[:2]["obs"][..., 9:11].float(), rtol=0, atol=0)
    assert tb.positions.shape == (2, buf.max_seq_length, 2, 2)


def test_intrinsic_reward_is_added_to_the_stored_reward(runs):
    """The bonus SHEP returns for a batch is added to exactly that batch's reward."""
    session, _ = runs["vdn", "shep"]
    batch = copy.deepcopy(session.buffer[:3])  # slices are views of the buffer
    before = batch["reward"].clone()
    plugin = session.pm.get_plugin("shep")
    steps = plugin.env_steps
    tb, copies = session.collected(batch)  # adds in place
    assert copies == []  # group_her is off
    bonus = batch["reward"] - before
    plugin.env_steps = steps
    assert bonus.abs().sum() > 0
    torch.testing.assert_close(tb.reward, batch["reward"].squeeze(-1))


def test_group_her_copies_are_stored_beside_the_originals(tmp_path):
    """Every step qualifies (threshold below any Moran's I): each episode gets one copy
    that ends at its first 3-step segment with the HER reward there."""
    hetplug_epymarl.install("pymarlzooplus")
    her = {
        **SHEP,
        "intrinsic_reward": False,
        "group_her": True,
        "her_moran_threshold": -2.0,
        "her_min_length": 3,
        "her_max_fraction": 1.0,
        "her_reward": 1.0,
    }
    run_host("qmix", {"plugins": ["shep"], "shep": her}, t_max=200, buffer_size=32)
    session = hetplug_epymarl.last_session()
    episodes = 5  # 200 / 50 + 1
    assert session.buffer.episodes_in_buffer == len(session.priorities()) == 2 * episodes
    # The copy of episode 0 is in slot 1: its first segment is steps 0..2.
    original, copy = session.buffer[0:1], session.buffer[1:2]
    torch.testing.assert_close(copy["obs"], original["obs"], rtol=0, atol=0)
    assert copy["filled"][0, :3].all() and not copy["filled"][0, 3:].any()
    assert copy["terminated"][0, 2] == 1
    bonus = copy["reward"] - original["reward"]
    torch.testing.assert_close(bonus[0, 2], torch.ones(1))
    torch.testing.assert_close(bonus[0, :2], torch.zeros(2, 1))


def test_per_agent_rewards_get_the_intrinsic_and_her_rewards(tmp_path):
    """With ``[B, T, N]`` rewards (EPyMARL's ``common_reward=False``) every agent's reward
    gets the same SHEP bonus, and a Group-HER copy gets the HER reward in every column."""
    hetplug_epymarl.install("pymarlzooplus")
    her = {**SHEP, "group_her": True, "her_moran_threshold": -2.0, "her_min_length": 3,
           "her_max_fraction": 1.0, "her_reward": 1.0}  # fmt: skip
    run_host("iql", {"plugins": ["shep"], "shep": her}, t_max=100, buffer_size=32)
    session = hetplug_epymarl.last_session()
    n = session.spec.n_agents
    batch = _per_agent_rewards(session.buffer[torch.tensor([0, 2]).numpy()], n)  # two originals
    before = batch["reward"].clone()
    tb, copies = session.collected(batch)
    bonus = batch["reward"] - before
    assert bonus.shape == (2, batch.max_seq_length, n) and bonus.abs().sum() > 0
    torch.testing.assert_close(bonus, bonus[..., :1].expand_as(bonus))  # one team bonus
    torch.testing.assert_close(tb.reward, batch["reward"])
    [(copy_batch, her_tb)] = copies
    rows = her_tb.extra["hetplug_row"][:, 0]
    assert copy_batch["reward"].shape == (len(rows), batch.max_seq_length, n)
    her_bonus = copy_batch["reward"] - batch["reward"][rows]
    torch.testing.assert_close(her_bonus[:, 2], torch.ones(len(rows), n))
    torch.testing.assert_close(her_bonus[:, :2], torch.zeros(len(rows), 2, n))


def _copies(session):
    inner = session.learner.inner
    for name in ("mac", "target_mac", "old_mac"):  # drop hidden states that hold a graph
        if hasattr(inner, name):
            getattr(inner, name).init_hidden(1)
    logger, inner.logger = inner.logger, types.SimpleNamespace(log_stat=lambda *a, **k: None)
    owner, inner.mac.learner = inner.mac.learner, None  # run.py sets mac.learner = learner
    try:
        return copy.deepcopy(inner), copy.deepcopy(inner)
    finally:
        inner.logger, inner.mac.learner = logger, owner


def _twins(session, variant: str):
    """Two copies of the session's host learner, set up alike for an oracle comparison:
    a hard target update every 2 updates, and return standardisation for that variant."""
    host, mine = _copies(session)
    for learner in (host, mine):
        learner.args.target_update_interval_or_tau = 2
        learner.args.standardise_returns = variant == "standardise_returns"
        if variant == "standardise_returns":
            from pymarlzooplus.components.standarize_stream import RunningMeanStd

            learner.ret_ms = RunningMeanStd(shape=(learner.n_agents,), device="cpu")
    return host, mine


def _params(learner):
    """Every trained and target parameter of a host QLearner or PPOLearner."""
    if hasattr(learner, "critic"):  # PPO
        modules = [learner.mac, learner.old_mac, learner.critic, learner.target_critic]
    else:
        modules = [learner.mac, learner.target_mac, learner.mixer, getattr(learner, "target_mixer", None)]
    return [p.detach().clone() for m in modules if m is not None for p in m.parameters()]


@pytest.mark.parametrize(
    "case", [("qmix", "per"), ("vdn", "shep"), ("iql", "per")], ids=["qmix", "vdn", "iql"]
)
@pytest.mark.parametrize("variant", ["default", "no_double_q", "standardise_returns"])
def test_unit_weights_give_the_hosts_own_update(runs, case, variant):
    """Oracle: the host's QLearner.train. With all weights 1 the adapter's update gives the
    same parameters, targets (hard update inside the loop) and TD errors."""
    session, _ = runs[case]
    host, mine = _twins(session, variant)
    for learner in (host, mine):
        learner.args.prioritized_buffer = True  # the host then returns its masked TD^2
        learner.args.double_q = variant != "no_double_q"
    buf = session.buffer
    start = host.training_steps
    for step, rows in enumerate(([0, 1, 2, 3], [4, 5, 6, 7], [1, 3, 5, 8])):
        batch = buf[torch.tensor(rows).numpy()]
        td2 = host.train(batch, t_env=step, episode_num=step)
        td, mask = weighted_q_update(mine, batch, torch.ones(len(rows)), t_env=step)
        torch.testing.assert_close(td**2, td2.reshape(td.shape))
        assert mask.shape == td.shape[:2]
        for a, b in zip(_params(host), _params(mine), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert host.training_steps == mine.training_steps == start + 3


@pytest.mark.parametrize("variant", ["default", "standardise_returns"])
def test_unit_weights_give_the_hosts_own_ppo_update(runs, variant):
    """Oracle: the host's PPOLearner.train (4 epochs, clipped policy loss, n-step critic)."""
    session, _ = runs["mappo", "shep"]
    host, mine = _twins(session, variant)
    buf = session.buffer
    start = host.critic_training_steps
    for step, rows in enumerate(([0, 1, 2, 3], [3, 2, 1, 0], [1, 1, 2, 3])):
        batch = buf[torch.tensor(rows).numpy()]
        host.train(batch, t_env=step, episode_num=step)
        td, mask = weighted_ppo_update(mine, batch, torch.ones(len(rows)), t_env=step)
        assert td.shape == (*mask.shape, host.n_agents)
        for a, b in zip(_params(host), _params(mine), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert host.critic_training_steps == mine.critic_training_steps == start + 3


def _per_agent_rewards(batch, n: int):
    """``batch`` with ``[B, T, N]`` rewards, as EPyMARL's ``common_reward=False`` stores them:
    agent i gets (i + 1) times the team reward, plus a step-dependent offset."""
    out = copy.deepcopy(batch)
    r = out.data.transition_data["reward"]
    steps = torch.arange(r.shape[1], dtype=r.dtype).reshape(1, -1, 1)
    out.data.transition_data["reward"] = r * torch.arange(1, n + 1, dtype=r.dtype) + 0.1 * steps
    return out


@pytest.mark.parametrize(
    "case", [("iql", "per"), ("mappo", "shep"), ("ippo", "per")], ids=["iql", "mappo", "ippo"]
)
@pytest.mark.parametrize("standardise", [False, True], ids=["raw", "standardise_rewards"])
def test_per_agent_rewards_give_the_hosts_own_update(runs, case, standardise):
    """EPyMARL's ``common_reward=False`` (``[B, T, N]`` rewards, one per agent) for the
    independent and actor-critic learners. Oracle: the host's own ``train`` on the same batch."""
    from pymarlzooplus.components.standarize_stream import RunningMeanStd

    session, _ = runs[case]
    host, mine = _twins(session, "default")
    n = host.args.n_agents
    for learner in (host, mine):
        learner.args.standardise_rewards = standardise
        learner.rew_ms = RunningMeanStd(shape=(n,), device="cpu")
    on_policy = case[0] != "iql"
    if not on_policy:
        for learner in (host, mine):
            learner.args.prioritized_buffer = True
    buf = session.buffer
    for step, rows in enumerate(([0, 1, 2, 3], [3, 2, 1, 0])):
        batch = _per_agent_rewards(buf[torch.tensor(rows).numpy()], n)
        assert batch["reward"].shape[-1] == n and not torch.equal(
            batch["reward"][..., 0], batch["reward"][..., 1]
        )
        out = host.train(batch, t_env=step, episode_num=step)
        update = weighted_ppo_update if on_policy else weighted_q_update
        td, _ = update(mine, batch, torch.ones(len(rows)), t_env=step)
        if not on_policy:
            torch.testing.assert_close(td**2, out.reshape(td.shape))
        for a, b in zip(_params(host), _params(mine), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    if standardise:
        torch.testing.assert_close(host.rew_ms.mean, mine.rew_ms.mean)
        assert host.rew_ms.mean.shape == (n,)


@pytest.mark.parametrize("case", [("qmix", "per"), ("mappo", "shep")], ids=["qmix", "mappo"])
def test_a_host_learner_without_what_the_update_reads_is_refused(runs, case):
    """Another EPyMARL version's learner fails when built, naming what it lacks; the
    learners of this host pass the same check."""
    session, _ = runs[case]
    kind = "ppo" if case[0] == "mappo" else "q"
    check_host_learner(session.learner.inner, kind)
    learner, _ = _copies(session)
    del learner.last_target_update_step
    learner.args = types.SimpleNamespace(**{k: v for k, v in vars(learner.args).items() if k != "gamma"})
    learner.args.standardise_rewards = True
    learner.__dict__.pop("rew_ms", None)
    with pytest.raises(ValueError, match=r"has no last_target_update_step, rew_ms, args\.gamma;"):
        check_host_learner(learner, kind)


@pytest.mark.parametrize(
    "case", [("qmix", "per"), ("iql", "per"), ("mappo", "shep")], ids=["qmix", "iql", "mappo"]
)
def test_is_weights_enter_the_loss(runs, case):
    """An episode with weight 0 cannot move the update: changing its rewards changes
    nothing; with weight 1 it does."""
    session, _ = runs[case]
    buf = session.buffer
    ids = torch.tensor([0, 1, 2, 3]).numpy()

    def update(weights, bump):
        _, learner = _copies(session)
        learner.args.standardise_rewards = False  # its running stats see every reward
        batch = buf[ids]
        batch = copy.deepcopy(batch)
        batch.data.transition_data["reward"][3] += bump
        update = weighted_ppo_update if case[0] == "mappo" else weighted_q_update
        update(learner, batch, torch.tensor(weights), t_env=0)
        return _params(learner)

    zero = [1.0, 0.5, 1.0, 0.0]
    for a, b in zip(update(zero, 0.0), update(zero, 5.0), strict=True):
        torch.testing.assert_close(a, b)
    one = [1.0, 0.5, 1.0, 1.0]
    assert any(not torch.equal(a, b) for a, b in zip(update(one, 0.0), update(one, 5.0), strict=True))


def test_sampled_weights_follow_the_plugins_closed_form(runs):
    session, _ = runs["qmix", "per"]
    sampler = session.pm.get_plugin("per").sampler
    session.buffer.sample(4)
    res = session.take_sample(4)
    p = sampler.probabilities()[res.indices]
    n = len(sampler)
    beta = sampler.beta
    p_min = sampler.probabilities().min()
    torch.testing.assert_close(res.weights, ((n * p) ** -beta / (n * p_min) ** -beta).to(res.weights.dtype))


def _saved_params(root: Path) -> dict[str, torch.Tensor]:
    models = sorted(root.glob("results/sacred/**/models/*"), key=lambda p: int(p.name))[-1]
    out = {}
    for name in ("agent.th", "mixer.th"):
        for k, v in torch.load(models / name).items():
            out[f"{name}:{k}"] = v
    return out


def test_a_config_without_the_key_runs_the_host_unchanged(tmp_path):
    """Same seed, same final parameters: installed-but-unused vs. not installed at all."""
    hetplug_epymarl.uninstall()
    assert not hasattr(prun.run_sequential, "__hetplug_original__")
    (tmp_path / "plain").mkdir()
    os.chdir(tmp_path / "plain")
    run_host("qmix", None, t_max=300, save_model=True)
    plain = _saved_params(tmp_path / "plain")
    hetplug_epymarl.install("pymarlzooplus")
    (tmp_path / "wrapped").mkdir()
    os.chdir(tmp_path / "wrapped")
    run_host("qmix", None, t_max=300, save_model=True)
    wrapped = _saved_params(tmp_path / "wrapped")
    assert plain.keys() == wrapped.keys()
    for k in plain:
        torch.testing.assert_close(plain[k], wrapped[k], rtol=0, atol=0)
    # and with hetplug the parameters differ (the prioritised update really ran)
    (tmp_path / "per").mkdir()
    os.chdir(tmp_path / "per")
    run_host("qmix", ["per"], t_max=300, save_model=True)
    per = _saved_params(tmp_path / "per")
    assert any(not torch.equal(plain[k], per[k]) for k in plain)


def test_checkpoint_restores_priorities_and_episodes(tmp_path):
    hetplug_epymarl.install("pymarlzooplus")
    hp = {"plugins": ["shep"], "shep": SHEP}
    run_host("qmix", hp, save_model=True)
    first = hetplug_epymarl.last_session()
    models = sorted(tmp_path.glob("results/sacred/**/models"))[-1]
    # t_max below the saved step: the restored run loads and stops before training.
    run_host("qmix", hp, t_max=100, checkpoint_path=str(models))
    second = hetplug_epymarl.last_session()
    assert second is not first and second.updates == first.updates
    torch.testing.assert_close(second.priorities(), first.priorities())
    for k, v in first.buffer.data.transition_data.items():
        torch.testing.assert_close(second.buffer.data.transition_data[k], v)
    a, b = first.pm.get_plugin("shep"), second.pm.get_plugin("shep")
    assert a.env_steps == b.env_steps and a.sampler._sample_calls == b.sampler._sample_calls


def test_loading_a_checkpoint_saved_without_hetplug_fails_clearly(tmp_path, capfd):
    hetplug_epymarl.install("pymarlzooplus")
    run_host("qmix", None, t_max=100, save_model=True)
    models = sorted(tmp_path.glob("results/sacred/**/models"))[-1]
    msg = "hetplug.th not found: the checkpoint was saved without hetplug"
    run_fails(capfd, msg, "qmix", ["per"], t_max=50, checkpoint_path=str(models))


BAD = [
    (["prioritised"], "unknown hetplug plugin 'prioritised'"),
    ({"plugins": ["per"], "per": {"alpah": 0.5}}, "unknown option per.alpah"),
    ({"plugins": ["shep"], "shep": {"grid_shape": "big"}}, "grid_shape"),
    (
        {"plugins": ["shep"], "shep": {"positions": {"slice": [14, 16]}}},
        r"hetplug.shep.positions.slice=\[14, 16\] is out of range: obs has 15",
    ),
]


@pytest.mark.parametrize("hp,message", BAD, ids=["plugin", "option", "type", "slice"])
def test_bad_configs_fail_before_training(hp, message, capfd):
    hetplug_epymarl.install("pymarlzooplus")
    before = hetplug_epymarl.last_session()
    run_fails(capfd, message, "qmix", hp, t_max=100)
    session = hetplug_epymarl.last_session()
    assert session is before or (session.learner is None and session.updates == 0)
    assert prun.ReplayBuffer.__module__.startswith("pymarlzooplus")  # host's class is back


@pytest.mark.parametrize(
    "hp,message",
    [
        ({"plugins": ["per"], "shep": {}}, "unknown key hetplug.shep"),
        ({"plugins": "per", "per": [1]}, "hetplug.per must be a mapping"),
        ({"plugins": []}, "hetplug.plugins must be a non-empty list"),
        (3, "hetplug must be a list of plugin names or a mapping"),
        ({"plugins": ["shep"], "shep": {"positions": {"source": "info"}}}, "hetplug.shep.positions.source"),
        ({"plugins": ["shep"], "shep": {"positions": {"slice": [2, 2]}}}, r"hetplug.shep.positions.slice"),
        ({"plugins": ["shep"], "shep": {"positions": {"slice": [0, 3]}}}, "hetplug.shep.positions.dim"),
        (
            {"plugins": ["shep"], "shep": {"positions": {"sliced": [0, 2]}}},
            "unknown key hetplug.shep.positions.sliced",
        ),
    ],
)
def test_settings_errors_name_the_key(hp, message):
    with pytest.raises(ValueError, match=message):
        parse_settings(hp)


def test_other_learners_with_a_prioritiser_are_refused(capfd):
    hetplug_epymarl.install("pymarlzooplus")
    run_fails(capfd, "needs the Q-learner .* learner='coma_learner'", "coma", ["per"], t_max=100)


def test_host_prioritized_buffer_and_hetplug_are_exclusive(capfd):
    hetplug_epymarl.install("pymarlzooplus")
    run_fails(capfd, "prioritized_buffer=True", "qmix", ["per"], t_max=100, prioritized_buffer=True)


def test_settings_forms():
    assert parse_settings(None) is None and parse_settings([]) is None
    s = parse_settings(["per"])
    assert s.plugins == ("per",) and s.prioritiser == "per"
    s = parse_settings(
        {"plugins": ["shep"], "shep": {**SHEP, "opponents": {"source": "state", "slice": [0, 4]}}}
    )
    assert s.positions.slice == (9, 11) and s.opponents.source == "state"
    assert "positions" not in s.options["shep"] and s.options["shep"]["grid_shape"] == (8, 8)


# ---------------------------------------------------------------------- the launcher
def _fake_src(root: Path) -> Path:
    src = root / "src"
    src.mkdir(parents=True)
    (src / "main.py").write_text("")
    (src / "run.py").write_text("")
    return src


def test_find_src_from_checkout_flag_and_env(tmp_path, monkeypatch):
    src = _fake_src(tmp_path / "epymarl")
    monkeypatch.delenv("HETPLUG_EPYMARL_SRC", raising=False)
    assert find_src(None, cwd=tmp_path / "epymarl") == src.resolve()
    assert find_src(None, cwd=src) == src.resolve()
    assert find_src(str(tmp_path / "epymarl")) == src.resolve()
    monkeypatch.setenv("HETPLUG_EPYMARL_SRC", str(src))
    assert find_src(None, cwd=tmp_path) == src.resolve()
    monkeypatch.delenv("HETPLUG_EPYMARL_SRC")
    with pytest.raises(SystemExit, match="no EPyMARL src/.*--epymarl-src"):
        find_src(None, cwd=tmp_path)


# ---------------------------------------------------------------------- examples
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "epymarl"


@pytest.mark.parametrize("name", ["qmix_per.yaml", "qmix_shep.yaml", "qmix_hetdps.yaml", "mappo_shppo.yaml"])
def test_example_configs_run(name):
    """Each example yaml, as a whole (its algorithm settings and its hetplug block), runs a
    few hundred steps on the host; only the sizes are shrunk for the test."""
    import yaml

    hetplug_epymarl.install("pymarlzooplus")
    config = yaml.safe_load((EXAMPLES / name).read_text())
    hp = config.pop("hetplug")
    plugins = parse_settings(hp).plugins
    base = "mappo" if config["learner"] == "ppo_learner" else "qmix"
    if "hetdps" in plugins:
        hp["hetdps"]["interval"] = 2  # a regrouping within the test's few updates
    sizes = {"batch_size": 4, "buffer_size": 16, **ON_POLICY.get(base, {})}
    run_host(base, hp, t_max=300, key=KEY if "shep" in plugins else KEY3, **{**config, **sizes})
    session = hetplug_epymarl.last_session()
    assert session.settings.plugins == plugins and session.updates > 0
    if "hetdps" in plugins:
        assert session.plans


def test_pymarlzooplus_example_runs(capsys):
    sys.path.insert(0, str(EXAMPLES))
    try:
        import run_pymarlzooplus
    finally:
        sys.path.remove(str(EXAMPLES))
    run_pymarlzooplus.main(["--plugin", "shep", "--t-max", "450"])
    assert "hetplug: {" in capsys.readouterr().out
    session = hetplug_epymarl.last_session()
    assert session.updates > 0 and session.settings.plugins == ("shep",)


# ---------------------------------------------------------------------- HetDPS
HETDPS = {
    "interval": 2,
    "preference": -10.0,
    "cvae": {"epochs": 5},
    "fit_samples": 256,
    "distance_samples": 128,
}
KEY3 = "lbforaging:Foraging-8x8-3p-2f-v3"  # three agents: affinity propagation can split them


def test_slot_agent_with_one_slot_is_the_hosts_rnn_agent():
    """Oracle: nn.Linear -> ReLU -> nn.GRUCell -> nn.Linear with slot 0's weights."""
    from hetplug_epymarl.slot_agent import SlotRNNAgent

    torch.manual_seed(0)
    n, i, h, a, bs = 3, 7, 8, 5, 4
    agent = SlotRNNAgent(i, n, h, a, n_slots=3, start="full")
    fc1, gru, fc2 = torch.nn.Linear(i, h), torch.nn.GRUCell(h, h), torch.nn.Linear(h, a)
    with torch.no_grad():
        fc1.weight.copy_(agent.fc1_w[0].T), fc1.bias.copy_(agent.fc1_b[0])
        gru.weight_ih.copy_(agent.w_ih[0].T), gru.bias_ih.copy_(agent.b_ih[0])
        gru.weight_hh.copy_(agent.w_hh[0].T), gru.bias_hh.copy_(agent.b_hh[0])
        fc2.weight.copy_(agent.fc2_w[0].T), fc2.bias.copy_(agent.fc2_b[0])
    x, hid = torch.randn(bs * n, i), torch.randn(bs, n, h)
    q, h1 = agent(x, hid)
    h_ref = gru(torch.relu(fc1(x)), hid.reshape(-1, h))
    torch.testing.assert_close(h1, h_ref)
    torch.testing.assert_close(q, fc2(h_ref))
    # agents routed to different slots use different weights
    agent.routing.copy_(torch.tensor([0, 1, 2]))
    q2, _ = agent(x, hid)
    torch.testing.assert_close(q2.view(bs, n, a)[:, 0], q.view(bs, n, a)[:, 0])
    assert not torch.allclose(q2.view(bs, n, a)[:, 1], q.view(bs, n, a)[:, 1])


@pytest.fixture(scope="module")
def hetdps_runs(tmp_path_factory):
    out = {}
    with host_in(tmp_path_factory.mktemp("hetdps")):
        for config in ("qmix", "mappo"):
            run_host(config, {"plugins": ["hetdps"], "hetdps": HETDPS}, key=KEY3, **ON_POLICY.get(config, {}))
            out[config] = hetplug_epymarl.last_session()
    return out


@pytest.mark.parametrize("config", ["qmix", "mappo"])
def test_hetdps_regroups_every_interval_and_logs_the_plan(hetdps_runs, config):
    session = hetdps_runs[config]
    assert [u for u, _ in session.plans] == list(range(2, session.updates + 1, 2))
    assert all(len(a) == 3 for _, a in session.plans)
    assert {"hetdps/n_groups", "hetdps/mean_distance", "hetdps/cvae_loss"} <= set(session.metrics)
    plugin = session.pm.get_plugin("hetdps")
    assert len(plugin.estimator.pool) > 0  # fed from the collected episodes
    inner = session.learner.inner
    follower = inner.target_mac if config == "qmix" else inner.old_mac
    routing = torch.tensor(session.plans[-1][1])
    assert torch.equal(inner.mac.agent.routing, routing) and torch.equal(follower.agent.routing, routing)


def test_hetdps_groups_reach_the_hosts_logs(caplog, tmp_path):
    """Each regrouping is written to the host's console log, and each agent's slot is a
    logged stat (hetplug_hetdps_slot_agent_i)."""
    hetplug_epymarl.install("pymarlzooplus")
    caplog.set_level(logging.INFO)
    run_host("qmix", {"plugins": ["hetdps"], "hetdps": HETDPS}, key=KEY3, t_max=300, learner_log_interval=50)
    session = hetplug_epymarl.last_session()
    lines = [m for m in caplog.messages if m.startswith("hetplug hetdps after update")]
    assert session.plans and len(lines) == len(session.plans)
    for (update, assignment), line in zip(session.plans, lines, strict=True):
        assert re.fullmatch(rf"hetplug hetdps after update {update}: \w+: \d -> \d groups, "
                            rf"agents -> slots \[{', '.join(map(str, assignment))}\] .*", line)  # fmt: skip
    last = session.plans[-1][1]
    assert [session.metrics[f"hetdps/slot/agent_{i}"] for i in range(3)] == [float(s) for s in last]
    info = json.loads((run_dirs(tmp_path)[-1] / "info.json").read_text())  # the host's logged stats
    assert [info[f"hetplug_hetdps_slot_agent_{i}"][-1] for i in range(3)] == [float(s) for s in last]


@pytest.mark.parametrize("config", ["qmix", "mappo"])
def test_hetdps_split_is_applied_in_place(hetdps_runs, config):
    """A split copies the shared slot (parameters, Adam moments, target/old mac) and
    reroutes; the optimiser and modules stay the same objects, outputs are unchanged."""
    session = hetdps_runs[config]
    inner = session.learner.inner
    plugin = session.pm.get_plugin("hetdps")
    optimiser = inner.optimiser if config == "qmix" else inner.agent_optimiser
    agent = inner.mac.agent
    follower = (inner.target_mac if config == "qmix" else inner.old_mac).agent
    routing = agent.routing.clone()
    if len(set(routing.tolist())) != 1:  # the run already split them: merge back first
        plugin.slots.apply(plugin.manager.update(torch.zeros(3, 3)))
        routing = agent.routing.clone()
    batch = session.buffer[:2]
    inner.mac.init_hidden(2)
    before = inner.mac.forward(batch, t=3).detach()
    # agents 0 and 1 alike, agent 2 far away: two groups
    plan = plugin.manager.update(torch.tensor([[0.0, 1.0, 50.0], [1.0, 0.0, 50.0], [50.0, 50.0, 0.0]]))
    assert plan.case == "split" and plan.n_groups == 2
    assert plan.assignment[0] == plan.assignment[1] != plan.assignment[2]
    plugin.slots.apply(plan)
    old = int(routing[0])
    new = next(s for s in set(plan.assignment) if s != old)
    assert torch.equal(agent.routing, plan.routing()) and torch.equal(follower.routing, plan.routing())
    for p, t in zip(agent.slot_parameters(), follower.slot_parameters(), strict=True):
        torch.testing.assert_close(p[new], p[old], rtol=0, atol=0)
        torch.testing.assert_close(t[new], t[old], rtol=0, atol=0)  # the target copies its own slot
        state = optimiser.state[p]
        torch.testing.assert_close(state["exp_avg"][new], state["exp_avg"][old], rtol=0, atol=0)
    in_optimiser = {id(q) for g in optimiser.param_groups for q in g["params"]}
    assert all(id(q) in in_optimiser for q in agent.slot_parameters())  # same tensors, not rebuilt
    inner.mac.init_hidden(2)
    torch.testing.assert_close(inner.mac.forward(batch, t=3).detach(), before)


def test_hetdps_needs_the_parameter_shared_rnn_agent(capfd):
    hetplug_epymarl.install("pymarlzooplus")
    run_fails(capfd, r"'hetdps' replaces the parameter-shared rnn agent .* mac='non_shared_mac'",
              "qmix_ns", ["hetdps"], t_max=100)  # fmt: skip


# ---------------------------------------------------------------------- SHPPO
@pytest.fixture(scope="module")
def shppo_run(tmp_path_factory):
    with host_in(tmp_path_factory.mktemp("shppo")) as root:
        run_host("mappo", {"plugins": ["shppo"], "shppo": {"latent_dim": 2}}, key=KEY3, save_model=True,
                 **ON_POLICY["mappo"])  # fmt: skip
        info = json.loads((run_dirs(root)[-1] / "info.json").read_text())
    return hetplug_epymarl.last_session(), info, root


def test_shppo_agent_replaces_rnn_and_logs_latent_losses(shppo_run):
    from hetplug_epymarl.shppo_agent import SHPPOAgent

    session, info, _ = shppo_run
    agent = session.learner.inner.mac.agent
    assert isinstance(agent, SHPPOAgent) and agent.latent_net.latent_dim == 2
    assert session.pm.get_plugin("shppo").latent_net is agent.latent_net
    for name in ("latent_loss", "inference_loss", "entropy", "distance", "value"):
        assert f"hetplug_shppo_{name}" in info
    assert session.metrics["shppo/distance"] > 0  # three agents: their latents are spread


def test_shppo_latent_net_is_trained_by_the_plugin_only(shppo_run):
    """The host's PPO update leaves the LatentNet alone (eq. 13, latents detached) and
    trains the shared actor; the plugin's step then moves the LatentNet."""
    session, _, _ = shppo_run
    host, _ = _copies(session)
    batch = session.buffer[torch.tensor([0, 1, 2, 3]).numpy()]
    latent = [p.detach().clone() for p in host.mac.agent.latent_net.parameters()]
    actor = [p.detach().clone() for p in host.mac.agent.actor.parameters()]
    host.train(batch, t_env=0, episode_num=0)
    for a, b in zip(latent, host.mac.agent.latent_net.parameters(), strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=0)
    assert any(
        not torch.equal(a, b.detach()) for a, b in zip(actor, host.mac.agent.actor.parameters(), strict=True)
    )
    live = session.learner.inner.mac.agent.latent_net
    before = [p.detach().clone() for p in live.parameters()]
    session.auxiliary(batch, session.learner.inner.mac)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, live.parameters(), strict=True))


def test_shppo_agents_get_their_own_generated_weights(shppo_run):
    """The same input through the HeteLayer with two agents' latents gives two outputs; the
    shared layers are one set of weights."""
    session, _, _ = shppo_run
    agent = session.learner.inner.mac.agent
    x = torch.randn(1, 3, agent.actor.obs_dim).expand(1, 3, -1)
    h = torch.zeros(1, 3, agent.hidden_dim)
    out, _ = agent(x.reshape(3, -1), h)
    mu, _ = agent.latent_net(x, h)
    ref, _ = agent.actor(x, mu, h)
    torch.testing.assert_close(out, ref.reshape(3, -1))
    mu_alt = mu.clone()
    mu_alt[0, 1] = mu[0, 0] + 1.0
    alt, _ = agent.actor(x, mu_alt, h)
    assert not torch.allclose(alt[0, 1], ref[0, 1]) and torch.equal(alt[0, 0], ref[0, 0])


def test_shppo_state_is_restored_from_a_checkpoint(shppo_run, tmp_path):
    first, _, root = shppo_run
    models = sorted(root.glob("results/sacred/**/models"))[-1]
    hetplug_epymarl.install("pymarlzooplus")
    run_host("mappo", {"plugins": ["shppo"], "shppo": {"latent_dim": 2}}, key=KEY3, t_max=100,
             checkpoint_path=str(models), **ON_POLICY["mappo"])  # fmt: skip
    second = hetplug_epymarl.last_session()
    saved_dir = sorted(models.iterdir(), key=lambda p: int(p.name))[-1]
    saved = torch.load(saved_dir / "hetplug.th", weights_only=False)["plugins"]["shppo"]
    plugin = second.pm.get_plugin("shppo")
    for k, v in plugin.inference.state_dict().items():
        torch.testing.assert_close(v, saved["inference"][k], rtol=0, atol=0)
    assert plugin._latent_opt.state_dict()["state"].keys() == saved["latent_optimizer"]["state"].keys()
    agent = torch.load(saved_dir / "agent.th")
    for k, v in plugin.latent_net.state_dict().items():
        torch.testing.assert_close(v, agent[f"latent_net.{k}"], rtol=0, atol=0)
    assert first is not second and second.updates == int(
        torch.load(saved_dir / "hetplug.th", weights_only=False)["updates"]
    )


@pytest.mark.parametrize(
    "config,hp,message",
    [
        ("qmix", ["shppo"], "'shppo' is an actor for the PPO learner"),
        ("mappo_ns", ["shppo"], "'shppo' replaces the parameter-shared rnn agent"),
    ],
)
def test_shppo_bad_configs_fail_before_training(capfd, config, hp, message):
    hetplug_epymarl.install("pymarlzooplus")
    run_fails(capfd, message, config, hp, t_max=100, **ON_POLICY.get(config.removesuffix("_ns"), {}))


@pytest.mark.parametrize(
    "hp,message",
    [
        (
            {"plugins": ["shppo"], "shppo": {"latent_dim": 0}},
            "hetplug.shppo.latent_dim must be an integer >= 1",
        ),
        (["shppo", "hetdps"], "'hetdps' and 'shppo' both replace the rnn agent"),
        ({"plugins": ["shppo"], "shppo": {"lambda_e": -1.0}}, "lambda_e"),
    ],
)
def test_shppo_settings_errors(hp, message):
    with pytest.raises(ValueError, match=message):
        parse_settings(hp)


# ---------------------------------------------------------------------- LBS
@pytest.fixture(scope="module")
def lbs_run(tmp_path_factory):
    with host_in(tmp_path_factory.mktemp("lbs")) as root:
        run_host("iql_ns", ["lbs"])
        info = json.loads((run_dirs(root)[-1] / "info.json").read_text())
    return hetplug_epymarl.last_session(), info


def test_lbs_runs_independent_learners_on_shared_experience(lbs_run):
    session, info = lbs_run
    assert session.updates == 9 - 4 + 1
    assert {"hetplug_lbs_shared_fraction", "hetplug_lbs_td_selected", "hetplug_lbs_td_large_batch"} <= set(
        info
    )
    shared = [v["value"] if isinstance(v, dict) else v for v in info["hetplug_lbs_shared_fraction"]]
    assert 0 < max(shared) <= 1  # learners trained on the other agent's experience


def test_lbs_mixed_batch_puts_each_item_in_its_learners_column(lbs_run):
    from hetplug_epymarl.lbs import mixed_batch

    session, _ = lbs_run
    buf = session.buffer
    slot = torch.tensor([[3, 1], [0, 0], [5, 2]])
    agent = torch.tensor([[1, 0], [0, 0], [1, 1]])
    batch, (reward, terminated, filled) = mixed_batch(buf, slot, agent)
    for r in range(3):
        for i in range(2):
            s, k = int(slot[r, i]), int(agent[r, i])
            for key in ("obs", "actions", "avail_actions", "actions_onehot"):
                torch.testing.assert_close(batch[key][r, :, i], buf[key][s, :, k], rtol=0, atol=0)
            torch.testing.assert_close(reward[r, :, i], buf["reward"][s, :, 0], rtol=0, atol=0)
            torch.testing.assert_close(filled[r, :, i], buf["filled"][s, :, 0], rtol=0, atol=0)
    # per-agent rewards (EPyMARL's common_reward=False): column i gets agent k's own reward
    team = buf.data.transition_data["reward"]
    per_agent = _per_agent_rewards(buf[:], 2)["reward"]
    buf.data.transition_data["reward"] = per_agent
    try:
        _, (reward, _, _) = mixed_batch(buf, slot, agent)
    finally:
        buf.data.transition_data["reward"] = team
    assert reward.shape == (3, buf.max_seq_length, 2)
    for r in range(3):
        for i in range(2):
            s, k = int(slot[r, i]), int(agent[r, i])
            torch.testing.assert_close(reward[r, :, i], per_agent[s, :, k], rtol=0, atol=0)


@pytest.mark.parametrize("per_agent", [False, True], ids=["team_reward", "per_agent_reward"])
def test_lbs_td_fn_equals_each_learner_on_a_swapped_episode(lbs_run, per_agent):
    """Oracle: learner i's TD on agent k's experience = learner i's TD, through the plain
    (unmixed) path, on a copy of the episode where columns i and k are swapped (rewards
    too, when they are per agent)."""
    from hetplug_epymarl.lbs import make_td_fn

    session, _ = lbs_run
    buf, learner = session.buffer, session.learner.inner
    sources, slots = torch.tensor([0, 1, 1, 0]), torch.tensor([2, 2, 5, 7])
    team = buf.data.transition_data["reward"]
    if per_agent:
        buf.data.transition_data["reward"] = _per_agent_rewards(buf[:], 2)["reward"]
    try:
        _check_td_fn(buf, learner, make_td_fn(buf, learner)(sources, slots), sources, slots, per_agent)
    finally:
        buf.data.transition_data["reward"] = team


def _check_td_fn(buf, learner, td, sources, slots, per_agent: bool) -> None:
    from hetplug_epymarl.learner import q_td_errors

    assert td.shape == (2, 4)
    for j in range(4):
        for i in range(2):
            episode = copy.deepcopy(buf[[int(slots[j])]])
            k = int(sources[j])
            for key in ("obs", "actions", "avail_actions", "actions_onehot") + (
                ("reward",) if per_agent else ()
            ):
                v = episode.data.transition_data[key]
                v[:, :, [i, k]] = v[:, :, [k, i]].clone()
            episode = episode[:, : int(episode.max_t_filled())]
            ref, mask = q_td_errors(learner, episode)
            expected = ref[0, :, i].abs().sum() / mask[0, :, i].sum()
            torch.testing.assert_close(td[i, j], expected)


def test_lbs_weights_enter_each_learners_loss(lbs_run):
    """Weight 0 on learner 1's item in row 0: changing that item's reward moves nothing."""
    from hetplug_epymarl.lbs import mixed_batch

    session, _ = lbs_run
    slot, agent = torch.tensor([[0, 1], [2, 3]]), torch.tensor([[0, 0], [1, 1]])

    def update(weights, bump):
        _, learner = _copies(session)
        learner.args.standardise_rewards = False
        batch, (r, d, f) = mixed_batch(session.buffer, slot, agent)
        r = r.clone()
        r[0, :, 1] += bump
        weighted_q_update(learner, batch, torch.tensor(weights), 0, (r, d, f))
        return _params(learner)

    zero = [[1.0, 0.0], [1.0, 1.0]]  # [B, N]
    for a, b in zip(update(zero, 0.0), update(zero, 3.0), strict=True):
        torch.testing.assert_close(a, b)
    one = [[1.0, 1.0], [1.0, 1.0]]
    assert any(not torch.equal(a, b) for a, b in zip(update(one, 0.0), update(one, 3.0), strict=True))


def test_lbs_needs_independent_q_learners(capfd):
    hetplug_epymarl.install("pymarlzooplus")
    run_fails(
        capfd,
        "'lbs' shares experience between independent Q-learners .* mixer='qmix'",
        "qmix",
        ["lbs"],
        t_max=100,
    )


# ---------------------------------------------------------------------- real EPyMARL
# These run EPyMARL's own src/main.py (through hetplug-epymarl, or plain for the reference
# run) in a subprocess when HETPLUG_EPYMARL_SRC points at a checkout's src/. They write a
# temporary algorithm yaml (the user's one-line change) into the checkout's config/algs.
EPYMARL = os.environ.get("HETPLUG_EPYMARL_SRC")
needs_epymarl = pytest.mark.skipif(
    not EPYMARL, reason="set HETPLUG_EPYMARL_SRC to an EPyMARL checkout's src/"
)


def _with_hetplug(base: str, hetplug) -> str:
    """An algorithm yaml's text with the ``hetplug`` key appended (block style at the top)."""
    import yaml

    return f"{base}\n{yaml.safe_dump({'hetplug': hetplug}, default_flow_style=None)}"


def test_the_real_epymarl_harness_writes_the_key_users_write():
    """Runs everywhere: the yaml the real-EPyMARL tests append parses back to each case's
    settings on top of the algorithm's yaml (PyMARLzoo+'s, the same format as EPyMARL's)."""
    import yaml

    for alg, hp, _, _ in REAL_RUNS.values():
        base = (Path(prun.__file__).parent / "config" / "algs" / f"{alg}.yaml").read_text()
        config = yaml.safe_load(_with_hetplug(base, hp))
        assert config == {**yaml.safe_load(base), "hetplug": hp}
        assert parse_settings(config["hetplug"]) is not None


def _epymarl_run(
    root: Path,
    alg: str,
    hetplug=None,
    *,
    plain: bool = False,
    key: str = KEY,
    src: Path | None = None,
    **overrides,
):
    """Run EPyMARL (the checkout's ``src/``, or ``src``) on lbforaging in ``root`` with
    ``alg``'s yaml plus ``hetplug: <hetplug>`` (no key when None); ``plain`` starts its
    ``main.py`` directly instead of ``hetplug-epymarl``. Returns ``(returncode, stdout + stderr)``."""
    src = src or find_src(EPYMARL)
    config, written = alg, None
    if hetplug is not None:
        config = f"hetplug_test_{alg}_{os.getpid()}"
        written = src / "config" / "algs" / f"{config}.yaml"
        base = (src / "config" / "algs" / f"{alg}.yaml").read_text()
        written.write_text(_with_hetplug(base, hetplug))
    settings = {
        "env_args.key": key,
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
    launcher = [str(src / "main.py")] if plain else ["-m", "hetplug_epymarl.cli", "--epymarl-src", str(src)]
    command = [sys.executable, *launcher, f"--config={config}", "--env-config=gymma", "with"]
    command += [f"{k}={v}" for k, v in settings.items()]
    root.mkdir(parents=True, exist_ok=True)
    try:
        out = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=root,
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"},
        )
    finally:
        if written is not None:
            written.unlink()
    return out.returncode, out.stdout + out.stderr


def _epymarl_models(root: Path) -> Path:
    """The latest saved step of the run in ``root``: the ``<t_env>`` folder holding
    ``agent.th`` (EPyMARL writes ``results/models/<token>/<t_env>``)."""
    return max((p.parent for p in root.glob("**/agent.th")), key=lambda p: int(p.name))


REAL_RUNS = {
    "qmix-per": ("qmix", ["per"], {}, "hetplug_priority_mean"),
    "qmix-shep": ("qmix", {"plugins": ["shep"], "shep": SHEP}, {}, "hetplug_shep_moran_i"),
    "qmix-hetdps": (
        "qmix",
        {"plugins": ["hetdps"], "hetdps": HETDPS},
        {"key": KEY3},
        "hetplug_hetdps_n_groups",
    ),
    "vdn-shep": ("vdn", {"plugins": ["shep"], "shep": SHEP}, {}, "hetplug_intrinsic_reward"),
    "iql-lbs-per-agent-reward": ("iql", ["lbs"], {"common_reward": False}, "hetplug_lbs_shared_fraction"),
    "mappo-per": ("mappo", ["per"], {}, "hetplug_priority_mean"),
    "mappo-shep": ("mappo", {"plugins": ["shep"], "shep": SHEP}, {}, "hetplug_shep_moran_i"),
    "mappo-shppo": ("mappo", {"plugins": ["shppo"]}, {"key": KEY3}, "hetplug_shppo_latent_loss"),
    "mappo-hetdps": (
        "mappo",
        {"plugins": ["hetdps"], "hetdps": HETDPS},
        {"key": KEY3},
        "hetplug_hetdps_n_groups",
    ),
    "ippo-per-per-agent-reward": ("ippo", ["per"], {"common_reward": False}, "hetplug_priority_mean"),
}


@needs_epymarl
@pytest.mark.parametrize("case", list(REAL_RUNS))
def test_real_epymarl_runs_each_plugin(tmp_path, case):
    """A few hundred lbforaging steps of EPyMARL with the plugin, its metrics in EPyMARL's log."""
    alg, hp, overrides, stat = REAL_RUNS[case]
    code, text = _epymarl_run(tmp_path, alg, hp, **overrides)
    assert code == 0, text[-4000:]
    assert "Beginning training" in text and stat in text, text[-4000:]


def _model_tensors(models: Path) -> dict[str, torch.Tensor]:
    return {f"{f.name}:{k}": v for f in sorted(models.glob("*.th")) for k, v in torch.load(f).items()}


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


@needs_epymarl
@pytest.mark.parametrize("hp,message", BAD, ids=["plugin", "option", "type", "slice"])
def test_real_epymarl_bad_configs_fail_before_training(tmp_path, hp, message):
    code, text = _epymarl_run(tmp_path, "qmix", hp, t_max=100)
    assert code != 0 and re.search(message, text), text[-4000:]
    assert "Beginning training" not in text


@needs_epymarl
def test_real_epymarl_checkpoint_carries_the_hetplug_state(tmp_path):
    hp = {"plugins": ["shep"], "shep": SHEP}
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


@needs_epymarl
def test_real_epymarl_auto_import_route(tmp_path):
    """The other entry: ``import hetplug_epymarl.auto`` first in (a copy of) src/main.py,
    then EPyMARL's own command line."""
    src = shutil.copytree(find_src(EPYMARL), tmp_path / "src", ignore=shutil.ignore_patterns("results"))
    main = src / "main.py"
    main.write_text("import hetplug_epymarl.auto  # noqa: F401\n" + main.read_text())
    code, text = _epymarl_run(tmp_path, "qmix", ["per"], plain=True, src=src)
    assert code == 0 and "hetplug_priority_mean" in text, text[-4000:]
