"""The README's main job runs: a real (shortened) training with each replay method."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name):
    sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shep_standalone_trains_with_every_method(tmp_path):
    module = load("shep_standalone")
    summary = module.main(
        ["--iterations", "4", "--updates", "2", "--envs", "8", "--capacity", "64", "--out", str(tmp_path)]
    )
    methods = [r["method"] for r in summary["results"]]
    assert methods == ["uniform", "per", "shep"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [r["method"] for r in saved["results"]] == methods
    assert all(len(r["curve"]) == 2 for r in saved["results"])
    assert (tmp_path / "curves.png").stat().st_size > 0
    copies = {r["method"]: r["her_copies"] for r in saved["results"]}
    assert copies["uniform"] == copies["per"] == 0 and copies["shep"] > 0  # Algorithm 1 stores them


def test_shep_standalone_stores_group_her_copies_as_the_hosts_fields():
    """A copy's per-step fields are the source row's, shifted to the copied episode's start;
    reward, done and mask are the relabelled ones; the observation one step past each step."""
    import torch

    import hetplug

    module = load("shep_standalone")
    B, T = 2, 4
    data = {
        "obs": torch.arange(B * (T + 1), dtype=torch.float32).reshape(B, T + 1, 1, 1),
        "actions": torch.arange(B * T).reshape(B, T, 1),
        "reward": torch.zeros(B, T),
        "done": torch.zeros(B, T, dtype=torch.bool),
        "mask": torch.ones(B, T, dtype=torch.bool),
        "positions": torch.zeros(B, T, 1, 2),
    }
    steps = torch.tensor([[2, 3, 3, 3]])  # an episode starting at step 2 of row 1, moved to 0
    copy = hetplug.TrajectoryBatch(
        reward=torch.tensor([[0.0, 1.0, 0.0, 0.0]]), mask=torch.tensor([[True, True, False, False]]),
        done=torch.tensor([[False, True, False, False]]),
        extra={"hetplug_row": torch.ones(1, T, dtype=torch.long), "hetplug_step": steps},
    )  # fmt: skip
    out = module.relabelled_copy(data, copy)
    assert out["actions"][0, :2, 0].tolist() == [T + 2, T + 3]
    assert out["obs"][0, :3, 0, 0].tolist() == [(T + 1) + 2, (T + 1) + 3, (T + 1) + 4]
    assert torch.equal(out["reward"], copy.reward) and torch.equal(out["mask"], copy.mask)


def test_coverage_env_reward_and_termination():
    import torch

    env_mod = load("coverage_env")
    env = env_mod.CoverageEnv(2, n_agents=2, n_landmarks=2, grid=4)
    env.reset(torch.Generator().manual_seed(0))
    env.pos = torch.tensor([[[0, 0], [3, 3]], [[1, 1], [2, 2]]])
    env.landmarks = torch.tensor([[[0, 1], [3, 3]], [[0, 0], [0, 0]]])
    _, reward, done = env.step(torch.tensor([[1, 0], [0, 0]]))  # agent 0 of env 0 moves up onto (0, 1)
    assert done.tolist() == [True, False]
    assert reward.tolist() == [2.0, 0.0]
    assert env.observe().shape == (2, 2, env.obs_dim)


def test_lbs_pursuit_runs_table_1s_setting_with_three_variants(tmp_path, capsys):
    """The paper's setting (Table 1: per-agent rewards, its reward values) with independent
    learners, parameter sharing (one Q-network) and LBS side by side, returns in one table."""
    module = load("lbs_pursuit")
    assert module.make_env(module.parse_args([])).unwrapped.env.shared_reward is False
    summary = module.main(
        [
            "--frames",
            "240",
            "--learning-starts",
            "60",
            "--max-cycles",
            "60",
            "--capacity",
            "200",
            "--target-every",
            "50",
            "--out",
            str(tmp_path),
        ]  # fmt: skip
    )
    results = summary["results"]
    assert list(results) == ["independent", "ps", "lbs"]
    assert summary["table_1"]["shared_reward"] is False
    assert all(len(r["episode_returns"]) == 4 for r in results.values())  # 240 frames / 60 cycles
    assert [results[m]["networks"] for m in results] == [8, 1, 8]
    for r in results.values():  # per-agent rewards: the pursuers' returns differ
        assert any(len(set(a)) > 1 for a in r["agent_returns"])
        assert abs(sum(r["agent_returns"][0]) - r["episode_returns"][0]) < 1e-3
    assert results["independent"]["shared_fraction"] == 0.0 == results["ps"]["shared_fraction"]
    assert results["lbs"]["shared_fraction"] > 0.0  # learners did take other agents' transitions
    assert (tmp_path / "returns.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert "| variant | networks | episodes | return (sum of 8 pursuers) |" in out
    assert [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ")][1:] == list(
        results
    )


def test_shppo_latents_trains_and_transfers_to_other_team_sizes(tmp_path):
    module = load("shppo_latents")
    results = module.main(
        ["--iterations", "3", "--envs", "8", "--eval-agents", "2", "6", "--out", str(tmp_path)]
    )
    assert set(results["eval_return_by_team_size"]) == {2, 4, 6}
    assert len(results["history"]) == 3
    latents = results["episode_latent_means"]
    assert len(latents) == 15 and len(latents[0]) == 4 and len(latents[0][0]) == 3  # [T, N, L]
    assert (tmp_path / "latents.png").stat().st_size > 0


def test_hetdps_case_study_draws_every_distance_matrix(tmp_path):
    module = load("hetdps_case_study")
    results = module.main(["--versions", "v1", "v6", "--episodes", "8", "--out", str(tmp_path)])
    for version in ("v1", "v6"):
        row = results["versions"][version]["distances"]
        assert set(row) == {"observation", "response", "effect", "objective", "meta"}
    # Model-based distances are exact: zero where nothing differs, positive between the groups.
    v1 = results["versions"]["v1"]["distances"]
    assert v1["response"] == [[0.0] * 4] * 4 and v1["observation"][0][2] > 0 and v1["observation"][0][1] == 0
    assert all(results["versions"]["v6"]["distances"][k][0][3] > 0 for k in module.KINDS)
    assert (tmp_path / "distances.png").stat().st_size > 0


@pytest.mark.parametrize("model", ["shppo", "mlp"])
def test_zero_shot_team_size_trains_at_three_and_evaluates_at_two_and_four(tmp_path, model):
    """The BenchMARL zero-shot script, tiny: HAPPO with SHPPO's model (or the shared MLP)
    trained with 3 agents on navigation, its mean episode reward at 2, 3 and 4 agents."""
    module = load("zero_shot_team_size")
    out = tmp_path / "result.json"
    result = module.main(
        ["--model", model, "--frames", "200", "--frames-per-batch", "100", "--envs", "4", "--minibatch", "50",
         "--epochs", "1", "--evaluation-episodes", "2", "--max-steps", "10", "--out", str(out)]
    )  # fmt: skip
    assert sorted(result["eval"]) == [2, 3, 4] and all(v == v for v in result["eval"].values())
    assert json.loads(out.read_text())["eval"].keys() == {"2", "3", "4"}


def test_hetdps_loop_groups_the_agents_by_their_type():
    """Two agents respond to actions the opposite way to the other two: the regrouping
    recovers the two types (adjusted Rand index 1 against the ground truth)."""
    from sklearn.metrics import adjusted_rand_score

    out = load("hetdps_loop").main(["--updates", "20", "--interval", "10", "--seed", "0"])
    assert len(out["plans"]) == 2
    assert adjusted_rand_score(out["types"], out["routing"]) == 1.0
    assert len(set(out["routing"])) == 2
