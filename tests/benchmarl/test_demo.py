"""The README's main job, `hetplug demo`, at a tiny size (real runs on a local Ray)."""

from __future__ import annotations

import json

import pytest

from hetplug_benchmarl import cli, demo

TINY = ["--frames", "200", "--frames-per-batch", "100", "--envs", "4", "--updates", "2", "--workers", "2"]


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """The README's default: three comparisons, two seeds per arm here (three by default)."""
    out = tmp_path_factory.mktemp("demo") / "suite"
    assert cli.main(["demo", *TINY, "--seeds", "2", "--out", str(out)]) == 0
    return out, json.loads((out / "report.json").read_text())


def test_demo_suite_runs_every_comparison_with_seeds_and_statistics(suite):
    out, report = suite
    got = [(c["algorithm"], c["plugins"], c["model"]) for c in report["comparisons"]]
    assert got == [("iql", ["shep"], "mlp"), ("iql", ["hetdps"], "slot"), ("mappo", ["shppo"], "shppo")]
    for comp in report["comparisons"]:
        summary = comp["summary"]
        assert [v["runs"] for v in summary["variants"].values()] == [2, 2]  # both arms, every seed
        (p,) = summary["prob_improvement"].values()
        assert 0 <= p["value"] <= 1 and "verdict" in p
        assert all(len(c["ci"][0]) == len(c["frames"]) for c in summary["curves"].values())  # CI bands
        assert (out / comp["name"] / "summary.json").exists() and (out / comp["name"] / "curves.png").exists()
    for name in ("curves.png", "hetplug.png", "hetdps.png", "shppo_latents.png"):
        assert (out / name).stat().st_size > 10_000


def test_demo_keeps_each_methods_outputs(suite):
    _, report = suite
    shep, hetdps, shppo = (c["outputs"]["seed_0"] for c in report["comparisons"])
    assert len(shep["metrics"]["hetplug/shep/moran_i"]) == 2  # one per training iteration
    copies = sum(v for _, v in shep["metrics"]["hetplug/shep/her_trajectories"])  # Group-HER, on by default
    assert len(shep["priorities"]) == 2 * 4 + copies  # iterations x envs trajectories, and the copies
    assert [u for u, _ in hetdps["regroupings"]] == [1, 2]  # interval = max(1, iterations // 6)
    assert len(hetdps["distances"][-1]) == 3 and all(len(a) == 3 for _, a in hetdps["regroupings"])
    latents = shppo["latent_means"]  # [T, N, L] of one evaluation episode
    assert len(latents[0]) == 3 and len(latents[0][0]) == 3
    assert "hetplug/shppo/latent_loss" in shppo["metrics"]


def test_demo_resumes_from_finished_runs(suite, capsys):
    out, _ = suite
    assert cli.main(["demo", *TINY, "--seeds", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(12 already in" in printed and ", 0 to run" in printed


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--plugins", "nope"], "unknown plugin 'nope'"),
        (["--task", "vmas/nowhere"], "unknown task 'vmas/nowhere'"),
        (["--algorithm", "mappo", "--plugins", "lbs"], "plugin 'lbs' is not available with on-policy"),
        (["--plugins", "shppo"], "plugin 'shppo' is not available with off-policy Iql"),
        (["--frames-per-batch", "100", "--envs", "3"], "must be a multiple of --envs (3)"),
    ],
)
def test_demo_refuses_bad_flags_before_any_run(tmp_path, capsys, argv, message):
    assert demo.main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and not (tmp_path / "out").exists()
