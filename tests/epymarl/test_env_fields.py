"""What the environment knows and EPyMARL's episode batch lacks (``env_fields``): agent
positions from a named extractor, alive masks and episode success, carried from the
environment object to the plugins through PyMARLzoo+'s own runners (EPyMARL's: in
test_real_epymarl.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hetplug
from hetplug_epymarl import read_config
from hetplug_epymarl.env_fields import EXTRACTORS, KEY, Recorder, RecordingEnv

from .cases import EXTRACTOR_TASKS, check_env_fields, check_lbforaging_success
from .real_driver import spy_on


def _shep(extractor: str, **options) -> dict:
    grid = {"grid_low": [0, 0], "grid_high": [10, 10], "grid_shape": [4, 4]}
    return {"plugins": ["shep"], "positions": {"extractor": extractor}, "shep": {**grid, **options}}


@pytest.fixture
def spy(host, monkeypatch):
    """``spy(envs) -> (batches, truth)``: every TrajectoryBatch the plugins get, and (with
    ``envs``; the environments must live in this process) every train episode's truth read
    from the environment object."""
    import pymarlzooplus.envs
    import pymarlzooplus.runners

    def patch(owner, name, value):
        if isinstance(owner, dict):
            monkeypatch.setitem(owner, name, value)
        else:
            monkeypatch.setattr(owner, name, value)

    def start(envs: bool = True):
        truth: list = []
        registry = pymarlzooplus.envs.REGISTRY if envs else {}
        return spy_on(registry, pymarlzooplus.runners.REGISTRY, truth, {"test": False}, patch), truth

    return start


@pytest.mark.parametrize(
    "task,runner", [("lbforaging", "episode"), ("lbforaging", "parallel"), ("rware", "episode")]
)
def test_extractors_give_the_environments_agent_positions(host, spy, task, runner):
    """Positions from ``{extractor: <task>}`` are the environment object's (lbforaging's
    players, rware's robots) after the reset and after every step, episode by episode, in
    both runners; the agent's own coordinates in its observation agree. lbforaging's
    success (every food collected) is the environment's at the episode's end."""
    key, obs_slice = EXTRACTOR_TASKS[task]
    batches, truth = spy(envs=runner == "episode")  # the parallel runner's are in its workers
    host.run("qmix", _shep(task), key=key, t_max=300, runner=runner,
             batch_size_run=2 if runner == "parallel" else 1)  # fmt: skip
    seen = check_env_fields(batches, truth if runner == "episode" else None, obs_slice)
    assert seen["episodes"] >= 6
    if task == "lbforaging":  # the observation agrees on success, in both runners
        assert {True, False} <= set(check_lbforaging_success(batches))
    if runner == "parallel":
        assert all(tb["mask"].shape[0] == 2 for tb in batches)


def test_an_extractor_that_does_not_find_its_environment_is_refused(host, capfd):
    host.fails(capfd, r"hetplug.positions.extractor='rware': environment .* holds no rware environment",
               "qmix", _shep("rware"), t_max=100)  # fmt: skip


def test_extractor_names_are_the_cores():
    assert set(EXTRACTORS) == set(hetplug.config.POSITION_EXTRACTORS)
    with pytest.raises(ValueError, match="hetplug.opponents.extractor='mpe' has no opponents"):
        read_config({**_shep("mpe"), "opponents": {"extractor": "mpe"}})


class _Unit:
    def __init__(self, x: float, y: float) -> None:
        self.pos, self.hp = np.array([x, y], dtype=np.float32), 1.0


class _Battle:
    """A SMAClite-like core: units leave ``agents`` / ``enemies`` when they die."""

    n_agents, n_enemies = 2, 1

    def __init__(self) -> None:
        self.agents = {0: _Unit(1, 1), 1: _Unit(2, 2)}
        self.enemies = {0: _Unit(5, 5)}

    def reset(self):
        return None, {}

    def step(self, actions):
        self.agents[1].pos += 1
        if actions == "kill":
            del self.agents[1]
            del self.enemies[0]
        return None, 0.0, False, False, {"battle_won": actions == "kill"}

    def get_env_info(self):
        return {"n_agents": 2}


_Battle.__module__ = "smaclite.env.smaclite"  # what the extractor recognises


def test_dead_units_keep_their_last_position_and_alive_and_success_are_recorded():
    """Alive masks and success where the environment reports them; a worker's records ride
    in the step's info, and the episode's end gives success (SMAC's battle_won)."""
    env = RecordingEnv(_Battle(), positions="smaclite", opponents="smaclite")
    assert env.get_env_info()[KEY]["positions"] == ("smaclite", True)
    env.reset()
    first = env.step("move")[-1][KEY]  # the reset's record and the step's
    last = env.step("kill")[-1][KEY]
    records = first + last
    assert [r["alive"].tolist() for r in records] == [[True, True], [True, True], [True, False]]
    assert [r["opponent_alive"].tolist() for r in records] == [[True], [True], [False]]
    np.testing.assert_array_equal(records[2]["positions"], [[1, 1], [3, 3]])  # dead: its last position
    assert "success" not in records[0] and [r["success"] for r in records[1:]] == [False, True]
    recorder = Recorder("smaclite", "smaclite")
    recorder.reset(0)
    recorder.add(0, records)
    recorder.finish_run(1)
    batch = {"filled": torch.tensor([[[1], [1], [1], [0]]])}
    fields = recorder.fields(_EpisodeBatch(batch), n_agents=2, device="cpu")
    assert fields["success"].tolist() == [True]
    assert fields["positions"].shape == (1, 4, 2, 2) and fields["opponent_positions"].shape == (1, 4, 1, 2)
    assert fields["alive"][0, :, 1].tolist() == [True, True, False, False]  # padding repeats the end
    assert recorder.fields(_EpisodeBatch(batch), 2, "cpu") == {}  # a run's records serve one insert


class _EpisodeBatch:
    def __init__(self, data: dict) -> None:
        self.data = data
        self.batch_size, self.max_seq_length = data["filled"].shape[:2]

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.data[key]
