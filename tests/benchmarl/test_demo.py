"""The README's main job, `hetplug demo`, at a tiny size."""

from __future__ import annotations

import json

import pytest

from hetplug_benchmarl import cli, demo


def test_demo_writes_the_report(tmp_path):
    out = tmp_path / "demo"
    argv = ["--algorithm", "iql", "--plugins", "shep", "--frames", "400", "--frames-per-batch", "200",
            "--envs", "4", "--updates", "2", "--out", str(out)]  # fmt: skip
    assert cli.main(["demo", *argv]) == 0
    report = json.loads((out / "report.json").read_text())
    (comp,) = report["comparisons"]
    assert [r["label"] for r in comp["runs"]] == ["baseline", "shep"]
    for run in comp["runs"]:
        assert run["frames"] == [200, 400]
        assert len(run["mean_step_reward"]) == 2
    shep = comp["runs"][1]
    copies = sum(shep["metrics"]["hetplug/shep/her_trajectories"])  # Group-HER (on by default)
    assert len(shep["final_priorities"]["agents"]) == 2 * 4 + copies  # iterations x envs trajectories
    assert len(shep["metrics"]["hetplug/shep/moran_i"]) == 2
    assert set(comp["summary"]) == {"baseline", "shep"}
    for name in ("curves.png", "hetplug.png"):
        assert (out / name).stat().st_size > 10_000


def test_demo_suite_covers_shep_hetdps_and_shppo(tmp_path):
    """The README's default: three comparisons, every figure the issue asks for."""
    out = tmp_path / "suite"
    argv = [
        "--frames",
        "600",
        "--frames-per-batch",
        "100",
        "--envs",
        "4",
        "--updates",
        "2",
        "--out",
        str(out),
    ]
    assert cli.main(["demo", *argv]) == 0
    report = json.loads((out / "report.json").read_text())
    got = [(c["algorithm"], c["plugins"], c["model"]) for c in report["comparisons"]]
    assert got == [("iql", ["shep"], "mlp"), ("iql", ["hetdps"], "slot"), ("mappo", ["shppo"], "shppo")]
    for name in ("curves.png", "hetplug.png", "hetdps.png", "shppo_latents.png"):
        assert (out / name).stat().st_size > 10_000


def test_demo_rejects_bad_flags_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit):
        demo.parse_args(["--frames-per-batch", "100", "--envs", "3"])
    assert "must be a multiple of --envs" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown hetplug plugin 'nope'"):
        demo.main(["--plugins", "nope", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--task 'nowhere' is not a VMAS task"):
        demo.main(["--task", "nowhere", "--out", str(tmp_path)])
    assert cli.main(["train"]) == 2


TINY = ["--frames", "600", "--frames-per-batch", "100", "--envs", "4", "--updates", "2"]


def test_demo_hetdps_draws_distances_and_groups(tmp_path):
    out = tmp_path / "hetdps"
    assert cli.main(["demo", *TINY, "--algorithm", "iql", "--plugins", "hetdps", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    runs = {r["label"]: r for r in report["comparisons"][0]["runs"]}
    hetdps = runs["hetdps"]["hetdps"]["agents"]
    assert hetdps["iterations"] == [1, 2, 3, 4, 5, 6]  # interval = iterations // 6
    assert len(hetdps["distances"][-1]) == 3 and all(len(a) == 3 for a in hetdps["assignments"])
    assert (out / "hetdps.png").stat().st_size > 10_000


def test_demo_shppo_draws_the_latents(tmp_path):
    out = tmp_path / "shppo"
    argv = [*TINY, "--algorithm", "mappo", "--plugins", "shppo", "--out", str(out)]
    assert cli.main(["demo", *argv]) == 0
    report = json.loads((out / "report.json").read_text())
    latents = report["comparisons"][0]["runs"][1]["shppo_latent_means"]["agents"]  # [T, N, L]
    assert len(latents[0]) == 3 and len(latents[0][0]) == 3
    assert (out / "shppo_latents.png").stat().st_size > 10_000
    assert "hetplug/shppo/latent_loss" in report["comparisons"][0]["runs"][1]["metrics"]


def test_demo_refuses_shppo_with_an_off_policy_algorithm(capsys):
    with pytest.raises(SystemExit):
        demo.parse_args(["--plugins", "shppo"])
    assert "--plugins shppo needs an on-policy algorithm" in capsys.readouterr().err
