"""SHEP's own setting: the MAgent2 ``battle`` task in BenchMARL (hetplug_benchmarl.tasks).

Oracles: magent2's own PettingZoo environment stepped with the same seed and actions
(positions, alive agents, rewards), and SHEP's scoring functions recomputed from the
batch BenchMARL collected."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("magent2")

from benchmarl.algorithms import IqlConfig  # noqa: E402
from benchmarl.experiment import Callback, Experiment  # noqa: E402
from benchmarl.models.mlp import MlpConfig  # noqa: E402
from magent2.environments import battle_v4  # noqa: E402
from tensordict import TensorDict  # noqa: E402
from torchrl.envs.utils import check_env_specs  # noqa: E402

import hetplug_benchmarl  # noqa: E402
from hetplug.config import PositionSource  # noqa: E402
from hetplug.shep import SHEPConfig, scoring  # noqa: E402
from hetplug.shep.episodes import episode_index, episode_start  # noqa: E402
from hetplug.spatial import GridCells  # noqa: E402
from hetplug_benchmarl.batch import to_trajectory_batch  # noqa: E402
from hetplug_benchmarl.tasks import BattleClass, MAgentBattleTask, win_rate  # noqa: E402
from hetplug_benchmarl.tasks.battle_env import BattleEnv, GreedyOpponent  # noqa: E402

from .conftest import quiet_config  # noqa: E402

MAP, CYCLES, ENVS, STEPS = 16, 30, 2, 30
N = 6  # agents per team on a 16 x 16 map
POSITIONS = {"key": "position", "slice": [0, 2]}
OPPONENTS = {"group": "blue", "key": "position", "slice": [0, 2]}
SHEP = {"grid_low": [0, 0], "grid_high": [MAP, MAP], "grid_shape": [4, 4]}


def battle_task(**options) -> BattleClass:
    task = MAgentBattleTask.BATTLE.get_from_yaml()
    task.config.update(map_size=MAP, max_cycles=CYCLES, **options)
    return task


def battle_experiment(folder, iters=1, callbacks=None) -> Experiment:
    cfg = quiet_config(folder)
    cfg.off_policy_collected_frames_per_batch = ENVS * STEPS
    cfg.off_policy_n_envs_per_worker = ENVS
    cfg.off_policy_n_optimizer_steps = 2
    cfg.off_policy_train_batch_size = 16
    cfg.off_policy_memory_size = 1000
    cfg.max_n_frames = iters * ENVS * STEPS
    model = MlpConfig.get_from_yaml()
    model.num_cells = [16]
    model.num_feature_dims = 3  # observations are [13, 13, 5] views
    return Experiment(
        task=battle_task(),
        algorithm_config=IqlConfig.get_from_yaml(),
        model_config=model,
        seed=0,
        config=cfg,
        callbacks=callbacks,
    )


def team_truth(raw, handle, offset: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions and alive mask of a team, straight from magent2's grid world."""
    grid = raw.unwrapped.env
    ids = np.asarray(grid.get_agent_id(handle)) - offset
    pos = np.zeros((size, 2), dtype=np.float32)
    alive = np.zeros(size, dtype=bool)
    pos[ids] = grid.get_pos(handle)
    alive[ids] = True
    return pos, alive


def play_against_raw(seed: int, red_policy, opponent: str, win_reward: float = 5.0):
    """Play one episode in BattleEnv and in magent2's own battle_v4 with the same seed and
    the same actions (red's from ``red_policy``, blue's as BattleEnv chose them); yield
    (ours, raw rewards, raw positions/alive per team) after every step."""
    env = BattleEnv(map_size=MAP, max_cycles=CYCLES, opponent=opponent, win_reward=win_reward, seed=seed)
    raw = battle_v4.parallel_env(map_size=MAP, max_cycles=CYCLES)
    raw.reset(seed=seed)  # BattleEnv seeds at construction, then the rollout resets
    raw.reset()
    red_h, blue_h = raw.unwrapped.env.get_handles()
    n, k = len(env.red), len(env.blue)
    td = env.reset()
    rng = np.random.default_rng(seed)
    for _ in range(CYCLES):
        red = red_policy(td, rng)
        td.set(("red", "action"), torch.as_tensor(red))
        blue = td.get(("blue", "action")).numpy()
        actions = {a: int(red[i]) for i, a in enumerate(env.red) if a in raw.agents}
        actions.update({a: int(blue[i]) for i, a in enumerate(env.blue) if a in raw.agents})
        _, rewards, _, _, _ = raw.step(actions)
        out = env.step(td)["next"]
        yield out, rewards, team_truth(raw, red_h, 0, n), team_truth(raw, blue_h, n, k)
        if out.get("done").item():
            return
        td = out


def random_red(td, rng):
    return rng.integers(21, size=td.get(("red", "alive")).shape[0])


def test_battle_env_specs_and_the_task_in_benchmarl(tmp_path):
    check_env_specs(BattleEnv(map_size=MAP, max_cycles=CYCLES, seed=0))
    exp = battle_experiment(tmp_path)
    assert exp.group_map == {"red": [f"red_{i}" for i in range(N)]}
    assert exp.observation_spec["red", "observation"].shape == (N, 13, 13, 5)
    assert list(exp.observation_spec["red"].keys()) == ["observation"]  # the policy's input only
    assert exp.action_spec["red", "action"].space.n == 21
    env_spec = exp.test_env.full_observation_spec
    assert env_spec["red", "position"].shape == (N, 2) and env_spec["red", "alive"].shape == (N, 1)
    assert env_spec["blue", "position"].shape == (N, 2) and env_spec["blue", "action"].shape == (N,)
    from benchmarl.environments import task_config_registry

    assert task_config_registry["magent/battle"] is MAgentBattleTask.BATTLE  # Hydra: task=magent/battle
    with pytest.raises(ValueError, match="unknown option 'map' of task magent/battle"):
        MAgentBattleTask.BATTLE.get_task({"map": 20})


def test_positions_alive_and_rewards_are_the_grid_worlds():
    """Greedy blue against random red: every step, each team's position and alive entries
    equal magent2's get_pos / get_agent_id, and red's rewards equal magent2's; red agents
    die, and a dead agent is alive=False with position 0, never alive again."""
    died = False
    was_alive = np.ones(N, dtype=bool)
    for out, rewards, (red_pos, red_alive), (blue_pos, blue_alive) in play_against_raw(
        1, random_red, "greedy"
    ):
        alive = out.get(("red", "alive")).squeeze(-1).numpy()
        np.testing.assert_array_equal(alive, red_alive)
        np.testing.assert_array_equal(out.get(("red", "position")).numpy(), red_pos)
        np.testing.assert_array_equal(out.get(("blue", "alive")).squeeze(-1).numpy(), blue_alive)
        np.testing.assert_array_equal(out.get(("blue", "position")).numpy(), blue_pos)
        reward = out.get(("red", "reward")).squeeze(-1).numpy()
        expected = np.array([rewards.get(f"red_{i}", 0.0) for i in range(N)], dtype=np.float32)
        np.testing.assert_allclose(reward, expected, rtol=0, atol=1e-6)
        assert not (alive & ~was_alive).any()
        assert (out.get(("red", "position"))[~torch.from_numpy(alive)] == 0).all()
        assert out.get(("red", "done")).squeeze(-1)[~torch.from_numpy(alive)].all()
        died |= not alive.all()
        was_alive = alive
    assert died and out.get("done").item() and not out.get("battle_won").item()


def test_a_won_battle_is_reported_and_rewarded():
    """Red played by the greedy script against random blue wins: ``battle_won`` is set at
    the last step only, and red agents that acted then get magent2's reward plus the win
    reward."""

    env = BattleEnv(map_size=MAP, max_cycles=CYCLES)
    policy = GreedyOpponent(*env.grid.get_view2attack(env.red_handle))

    def greedy_red(td, rng):
        alive = td.get(("red", "alive")).squeeze(-1).numpy()
        enemies = td.get(("blue", "position")).numpy()[td.get(("blue", "alive")).squeeze(-1).numpy()]
        act = np.full(alive.shape, 6)
        obs = td.get(("red", "observation")).numpy()
        act[alive] = policy(obs[alive], td.get(("red", "position")).numpy()[alive], enemies, rng)
        return act

    steps = list(play_against_raw(2, greedy_red, "random", win_reward=5.0))
    out, rewards, (_, red_alive), (_, blue_alive) = steps[-1]
    assert out.get("done").item() and out.get("battle_won").item()
    assert red_alive.sum() > blue_alive.sum()
    assert not any(s[0].get("battle_won").item() for s in steps[:-1])
    reward = out.get(("red", "reward")).squeeze(-1).numpy()
    expected = np.array([rewards[f"red_{i}"] + 5.0 if f"red_{i}" in rewards else 0.0 for i in range(N)])
    np.testing.assert_allclose(reward, expected, rtol=0, atol=1e-5)


def test_greedy_opponent_attacks_in_range_else_closes_in():
    env = BattleEnv(map_size=MAP, max_cycles=CYCLES)
    policy = GreedyOpponent(*env.grid.get_view2attack(env.blue_handle))
    obs = np.zeros((2, 13, 13, 5), dtype=np.float32)
    obs[0, 6, 7, 3], obs[0, 6, 7, 4] = 1.0, 0.5  # enemy right of agent 0 (dx=+1), weak
    obs[0, 5, 6, 3], obs[0, 5, 6, 4] = 1.0, 0.9  # enemy above it (dy=-1), strong
    pos = np.array([[5.0, 5.0], [5.0, 5.0]])
    actions = policy(obs, pos, np.array([[9.0, 5.0], [5.0, 0.0]]), None)
    view2attack = env.grid.get_view2attack(env.blue_handle)
    assert actions[0] == view2attack[0] + view2attack[1][6, 7]  # the weaker one
    assert actions[1] == 8  # nothing in range: move (+2, 0) towards the nearest, (9, 5)


def test_alive_and_opponents_reach_the_trajectory_batch():
    """``to_trajectory_batch`` reads ``(group, "alive")`` (and the opponents' alive and
    action) when the batch has them, and leaves them None when it has not (VMAS)."""
    B, T, N, K = 2, 3, 4, 5
    alive = torch.rand(B, T, N, 1) > 0.5
    batch = TensorDict(
        {
            "red": {
                "observation": torch.zeros(B, T, N, 6),
                "action": torch.randint(21, (B, T, N)),
                "position": torch.rand(B, T, N, 2),
                "alive": alive,
            },
            "blue": {
                "position": torch.rand(B, T, K, 2),
                "alive": torch.ones(B, T, K, 1, dtype=torch.bool),
                "action": torch.randint(21, (B, T, K)),
            },
            "next": {
                "red": {"reward": torch.zeros(B, T, N, 1), "done": torch.zeros(B, T, N, 1, dtype=torch.bool)}
            },
        },
        batch_size=(B, T),
    )
    pos = PositionSource.parse(POSITIONS, "positions")
    opp = PositionSource.parse(OPPONENTS, "opponents")
    tb = to_trajectory_batch(batch, "red", True, pos, opp)
    assert torch.equal(tb.alive, alive.squeeze(-1)) and tb.opponent_alive.shape == (B, T, K)
    assert torch.equal(tb.opponent_actions, batch["blue", "action"])
    assert torch.equal(tb.positions, batch["red", "position"])
    plain = to_trajectory_batch(batch.exclude(("red", "alive"), "blue"), "red", True, pos)
    assert plain.alive is None and plain.opponent_alive is None and plain.opponent_actions is None


def test_each_step_carries_its_episodes_outcome_for_group_her():
    """``battle_won`` (True at a won episode's last step) becomes a per-step success: the
    outcome of the episode holding the step, several episodes per row; an episode still
    running at the row's end counts as not won. Checked against a loop."""
    g = torch.Generator().manual_seed(0)
    B, T, N = 8, 12, 2
    done = torch.rand(B, T, generator=g) < 0.25
    won = done & (torch.rand(B, T, generator=g) < 0.5)
    batch = TensorDict(
        {
            "red": {"observation": torch.zeros(B, T, N, 3), "action": torch.zeros(B, T, N, dtype=torch.long)},
            "next": {
                "red": {"reward": torch.zeros(B, T, N, 1), "done": done[..., None, None].expand(B, T, N, 1)},
                "battle_won": won.unsqueeze(-1),
            },
        },
        batch_size=(B, T),
    )
    success = to_trajectory_batch(batch, "red", True).success
    for b in range(B):
        start = 0
        for t in range(T):
            if done[b, t] or t == T - 1:
                outcome = bool(won[b, t]) if done[b, t] else False
                assert success[b, start : t + 1].eq(outcome).all(), (b, start, t)
                start = t + 1
    assert to_trajectory_batch(batch.exclude(("next", "battle_won")), "red", True).success is None


def test_opponents_can_be_a_team_no_group_plays(tmp_path):
    exp = battle_experiment(tmp_path)
    with pytest.raises(ValueError, match=r"opponents.group='green'.*other teams in the batch: \['blue'\]"):
        hetplug_benchmarl.wrap(exp, ["shep"], positions=POSITIONS, opponents={**OPPONENTS, "group": "green"})
    with pytest.raises(ValueError, match=r"opponents.key=\['pos'\]: group 'blue' has no such entry"):
        hetplug_benchmarl.wrap(exp, ["shep"], positions=POSITIONS, opponents={**OPPONENTS, "key": "pos"})
    assert exp.callbacks == []


class KeepBatch(Callback):
    def on_batch_collected(self, batch):
        self.batch = batch.clone()  # before hetplug adds its intrinsic reward


def test_shep_on_battle_uses_positions_opponents_and_alive(tmp_path):
    """A real IQL run with ``shep``: positions, alive masks and the opponents' positions come
    from the grid world's entries; SHEP's logged advantage change is delta(t) with the
    opponents' score (recomputed here from the batch), not without it; dead agents are
    masked (moving them changes no descriptor)."""
    keep = KeepBatch()
    exp = battle_experiment(tmp_path, callbacks=[keep])
    cb = hetplug_benchmarl.wrap(
        exp,
        {"plugins": ["shep"], "shep": {**SHEP, "intrinsic_reward": True}},
        positions=POSITIONS,
        opponents=OPPONENTS,
    )
    exp.run()
    metrics = cb.metrics("red")
    for name in ("moran_i", "occupancy_entropy", "action_diversity", "advantage_change", "intrinsic_reward"):
        assert f"hetplug/shep/{name}" in metrics
    tb = cb.groups["red"].collected
    batch = keep.batch
    assert torch.equal(tb.positions, batch["red", "position"])
    assert torch.equal(tb.opponent_positions, batch["blue", "position"])
    assert torch.equal(tb.alive, batch["red", "alive"].squeeze(-1))
    assert torch.equal(tb.opponent_actions, batch["blue", "action"])
    assert not tb.alive.all()  # greedy blue kills red agents within the batch

    c = SHEPConfig(**SHEP)
    cells = GridCells(c.grid_low, c.grid_high, c.grid_shape)

    def score(positions, alive, actions):
        d = scoring.describe(cells, positions, alive=alive, actions=actions, n_actions=21)
        return d, scoring.situation_score(d, c.alpha, c.beta, c.eta)

    own, e_self = score(tb.positions, tb.alive, tb.actions)
    _, e_opp = score(tb.opponent_positions, tb.opponent_alive, tb.opponent_actions)
    start = episode_start(episode_index(tb.done, tb.mask.shape, tb.device))  # Delta stays inside episodes
    change = scoring.temporal_change(scoring.advantage(e_self, e_opp, c.kappa), 1, start).abs().mean()
    alone = scoring.temporal_change(scoring.advantage(e_self, None, c.kappa), 1, start).abs().mean()
    assert metrics["hetplug/shep/advantage_change"] == pytest.approx(change.item(), rel=1e-5)
    assert metrics["hetplug/shep/advantage_change"] > 0
    assert abs(change - alone) > 1e-3  # the opponents' positions matter
    assert metrics["hetplug/shep/moran_i"] == pytest.approx(own.moran.mean().item(), rel=1e-5, abs=1e-6)

    moved = torch.where(tb.alive.unsqueeze(-1), tb.positions, torch.full_like(tb.positions, MAP - 1))
    again, _ = score(moved, tb.alive, torch.where(tb.alive, tb.actions, 0))
    for a, b in zip(own, again, strict=True):
        torch.testing.assert_close(a, b)


def test_win_rate_is_logged_from_ended_episodes():
    done = torch.tensor([[False, True, False, True]]).unsqueeze(-1)
    won = torch.tensor([[False, True, False, False]]).unsqueeze(-1)
    alive = torch.ones(1, 4, 3, 1, dtype=torch.bool)
    batch = TensorDict(
        {"next": {"done": done, "battle_won": won, "red": {"alive": alive}, "blue": {"alive": ~alive}}},
        batch_size=(1, 4),
    )
    info = BattleClass.log_info(batch)
    assert info["battle/win_rate"] == 0.5 and info["battle/episodes"] == 2.0
    assert info["battle/red_alive"] == 3.0 and info["battle/blue_alive"] == 0.0
    # evaluation rollouts count up to their first done: won at step 1 / lost at step 3
    assert win_rate([batch[0], batch[0, 2:]]) == 0.5


def test_example_runs_iql_with_and_without_shep(tmp_path, monkeypatch):
    """examples/shep_battle.py, shrunk: both variants train, SHEP's descriptors and
    Group-HER copies are reported, and the results are written."""
    import importlib.util
    import json
    import sys
    from pathlib import Path

    examples = Path(__file__).resolve().parents[2] / "examples"
    spec = importlib.util.spec_from_file_location("shep_battle", examples / "shep_battle.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.syspath_prepend(str(examples))
    monkeypatch.setitem(sys.modules, "shep_battle", module)  # BenchMARL pickles its callback
    spec.loader.exec_module(module)
    options = "--frames 120 --frames-per-batch 60 --envs 2 --updates 2 --batch 16 --hidden 16"
    summary = module.main(
        options.split()
        + [
            "--map-size",
            str(MAP),
            "--max-cycles",
            str(CYCLES),
            "--eval-episodes",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    base, shep = summary["results"]
    assert (base["variant"], shep["variant"]) == ("iql", "iql+shep")
    assert base["frames"] == shep["frames"] == 120 and "shep" not in base
    assert shep["shep"]["advantage_change"] > 0 and shep["shep"]["her_trajectories"] >= 1
    assert len(base["eval"]) == 2 and 0.0 <= base["eval"][-1]["win_rate"] <= 1.0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [r["variant"] for r in saved["results"]] == ["iql", "iql+shep"]
