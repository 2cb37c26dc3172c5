"""examples/results.py: the summaries of the script experiments (SHPPO zero-shot, LBS on
Pursuit), their resumable runner, the verdicts and the page, on small fake inputs (no training)."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest
from rliable import metrics

from tests.examples.test_examples import EXAMPLES

pytest.importorskip("hetplug_benchmarl.compare")

SEEDS = range(5)


@pytest.fixture(scope="module")
def results():
    import importlib.util

    spec = importlib.util.spec_from_file_location("hetplug_results_page", EXAMPLES / "results.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _zero_shot_runs(offset: float = 0.0) -> dict[int, dict]:
    rng = np.random.default_rng(int(offset * 10) + 1)
    return {s: {"frames": 300, "eval": {str(n): float(-n + offset + rng.normal(0, 0.1)) for n in (2, 3, 4)}}
            for s in SEEDS}  # fmt: skip


def test_zero_shot_summary_is_rliable_per_team_size(results):
    runs = {"mlp": _zero_shot_runs(0.0), "shppo": _zero_shot_runs(1.0)}
    runs["shppo"].pop(4)  # a missing run leaves fewer scores, not a hole
    summary = results.zero_shot_summary(
        runs, (2, 3, 4), 3, failed={"shppo seed 4": "exit status 1"}, reps=200
    )
    assert list(summary["variants"]) == [
        "mlp n=2",
        "shppo n=2",
        "mlp n=3",
        "shppo n=3",
        "mlp n=4",
        "shppo n=4",
    ]
    for n in (2, 3, 4):
        for model, seeds in (("mlp", list(SEEDS)), ("shppo", [0, 1, 2, 3])):
            scores = [runs[model][s]["eval"][str(n)] for s in seeds]
            v = summary["variants"][f"{model} n={n}"]
            assert v["runs"] == len(seeds) and v["scores"] == {
                f"seed_{s}": x for s, x in zip(seeds, scores, strict=True)
            }
            assert v["iqm"] == pytest.approx(metrics.aggregate_iqm(np.array(scores)[:, None]))
            assert v["ci"][0] <= v["iqm"] <= v["ci"][1]
        p = summary["prob_improvement"][f"shppo n={n}"]
        x = np.array([runs["shppo"][s]["eval"][str(n)] for s in range(4)])[:, None]
        y = np.array([runs["mlp"][s]["eval"][str(n)] for s in SEEDS])[:, None]
        assert p["over"] == f"mlp n={n}" and p["value"] == pytest.approx(
            metrics.probability_of_improvement(x, y)
        )
        assert "inconclusive" in p["verdict"]  # 4 runs: too few
    assert summary["models"]["shppo n=4"] == "shppo" and summary["frames"] == 300
    assert summary["failed"] == [{"run": "shppo seed 4", "error": "exit status 1"}]
    word, reason = results.verdict(summary, ("shppo n=2", "shppo n=4"))
    assert word == "inconclusive" and "only 4 finished runs" in reason and "P(shppo n=4 > mlp n=4)" in reason
    # with too few runs no comparison is read as beyond noise, whatever its bootstrap CI
    assert "beyond noise" not in reason and reason.count("too few runs to judge") == 2


def _lbs_run(level: float, seed: int, frames: int = 4000, length: int = 500) -> dict:
    ends = list(range(length, frames + 1, length))
    return {"episode_end_frames": ends, "episode_returns": [level * f / frames + 0.1 * seed for f in ends]}


def test_lbs_summary_scores_the_last_quarter_and_compares_lbs_with_both_baselines(results):
    runs = {
        v: {s: _lbs_run(level, s) for s in SEEDS} for v, level in (("independent", 1), ("ps", 2), ("lbs", 3))
    }
    summary = results.lbs_summary(runs, 4000, reps=200)
    # episodes ending after 75 % of the last episode's frames (3000): those ending at 3500 and 4000
    expected = {v: [np.mean([r["episode_returns"][-2], r["episode_returns"][-1]]) for r in by.values()]
                for v, by in runs.items()}  # fmt: skip
    for v, scores in expected.items():
        assert list(summary["variants"][v]["scores"].values()) == pytest.approx(scores)
        assert summary["variants"][v]["iqm"] == pytest.approx(
            metrics.aggregate_iqm(np.array(scores)[:, None])
        )
    assert set(summary["prob_improvement"]) == {"ps", "lbs"}
    assert {p["over"] for p in summary["prob_improvement"].values()} == {"independent"}
    (over_ps,) = summary["comparisons"]
    x, y = (np.array(expected[v])[:, None] for v in ("lbs", "ps"))
    assert over_ps["variant"] == "lbs" and over_ps["over"] == "ps"
    assert over_ps["value"] == pytest.approx(metrics.probability_of_improvement(x, y))
    assert (
        summary["curves"]["lbs"]["frames"] == [1000, 2000, 3000, 4000]
        and summary["curves"]["lbs"]["runs"] == 5
    )
    assert "sum over the pursuers" in summary["metric"]["label"]
    assert results.verdict(summary, ("lbs", "lbs|ps"))[0] == "reproduced"
    summary["comparisons"][0]["ci"] = [0.3, 0.7]  # no difference with PS: the claim (both) fails
    word, reason = results.verdict(summary, ("lbs", "lbs|ps"))
    assert (
        word == "not reproduced at this scale"
        and "P(lbs > ps) 1.00, 95% CI [0.30, 0.70]: no difference" in reason
    )


def test_binned_curves_carry_the_last_value_and_drop_leading_gaps(results):
    run = {"episode_end_frames": [1500, 1900, 4000], "episode_returns": [1.0, 3.0, 5.0]}
    assert results.binned_curves([run], 4000) == ([2000, 3000, 4000], [[2.0, 2.0, 5.0]])


FAKE_SCRIPT = """
import argparse, json, pathlib, sys
p = argparse.ArgumentParser()
for a in ("--model", "--seed", "--out", "--frames", "--train-agents"):
    p.add_argument(a)
p.add_argument("--eval-agents", nargs="+")
a = p.parse_args()
with open(pathlib.Path(a.out).parents[2] / "started.txt", "a") as f:
    f.write(f"{a.model} {a.seed}\\n")
if a.model == "shppo" and a.seed == "1" and not pathlib.Path(a.out).with_name("retry").exists():
    sys.exit("fails once")
pathlib.Path(a.out).write_text(json.dumps({"frames": int(a.frames), "eval": {n: float(a.seed) + (a.model == "shppo")
                                                                             for n in a.eval_agents}}))
"""


def test_script_experiment_runs_each_missing_run_once_and_reports_failures(
    results, tmp_path, monkeypatch, capsys
):
    (tmp_path / "fake.py").write_text(textwrap.dedent(FAKE_SCRIPT))
    monkeypatch.setattr(results, "ROOT", tmp_path)
    monkeypatch.setattr(results, "RUNS", tmp_path / "results")
    exp = results.ZeroShotExperiment(name="zs", method="SHPPO", claim="c", scale="s", argv=("--frames", "10"),
                                     seeds=2, script="fake.py")  # fmt: skip
    assert exp.execute(workers=2) == 1  # shppo seed 1 failed; the other three runs are kept
    started = (tmp_path / "results/zs/started.txt").read_text().split("\n")
    assert sorted(filter(None, started)) == ["mlp 0", "mlp 1", "shppo 0", "shppo 1"]
    summary = json.loads((tmp_path / "results/zs/summary.json").read_text())
    assert [f["run"] for f in summary["failed"]] == ["shppo seed 1"]
    assert summary["variants"]["shppo n=3"]["runs"] == 1 and summary["variants"]["mlp n=3"]["runs"] == 2
    assert (tmp_path / "results/zs/aggregate.png").stat().st_size > 0
    (tmp_path / "results/zs/runs/shppo/retry").touch()
    assert exp.execute(workers=2) == 0  # only the missing run starts again
    assert (tmp_path / "results/zs/started.txt").read_text().split("\n")[4:] == ["shppo 1", ""]
    assert "python fake.py --model VARIANT --seed SEED" in exp.run_command
    assert "1 to run" in capsys.readouterr().out


def test_page_renders_every_kind_from_committed_files_only(results, tmp_path, monkeypatch):
    monkeypatch.setattr(results, "DOCS", tmp_path)
    runs = {"mlp": _zero_shot_runs(0.0), "shppo": _zero_shot_runs(1.0)}
    zero_shot = next(e for e in results.EXPERIMENTS if isinstance(e, results.ZeroShotExperiment))
    lbs = next(e for e in results.EXPERIMENTS if isinstance(e, results.LbsExperiment))
    (tmp_path / zero_shot.name).mkdir()
    summary = results.zero_shot_summary(runs, (2, 3, 4), 3, reps=200)
    (tmp_path / zero_shot.name / "summary.json").write_text(json.dumps(summary))
    (tmp_path / zero_shot.name / "provenance.yaml").write_text("command: x\ncommit: abc\ndate: 2026-12-01\n")
    text = results.page()
    assert text.count("**Not run yet.**") == len(results.EXPERIMENTS) - 1
    iqm = summary["variants"]["shppo n=4"]["iqm"]
    p = summary["prob_improvement"]["shppo n=2"]
    assert f"| shppo n=4 | shppo | 5 | {iqm:+.4f} |" in text
    assert f"| shppo n=2 > mlp n=2 | {p['value']:.2f} |" in text
    assert "**Verdict: reproduced** (P(shppo n=2 > mlp n=2) 1.00" in text  # every shppo run is 1 higher
    assert "commit: abc; date: 2026-12-01" in text and lbs.command in text and lbs.run_command in text
    assert "curves.png" not in text.split(f"## SHPPO: {zero_shot.name}")[1].split("## ")[0]


def test_only_names_known_experiments(results, capsys):
    with pytest.raises(SystemExit):
        results.main(["run", "--only", "nope"])
    assert "unknown experiment(s) nope" in capsys.readouterr().err


def test_results_runs_folder_is_ignored_but_docs_results_are_not():
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    ignored = subprocess.run(["git", "-C", str(root), "check-ignore", "results/x/summary.json",
                              "docs/results/x/summary.json", "docs/results/x/curves.png"],
                             capture_output=True, text=True).stdout.split()  # fmt: skip
    assert ignored == ["results/x/summary.json"]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
