"""`hetplug compare`: a tiny grid (2 variants x 2 seeds, 300 frames) on a local Ray.

One Ray is started for the module through the engine's own local start (`connect`), and
the command reuses it, so the workers import BenchMARL once.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from benchmarl.eval_results import get_raw_dict_from_multirun_folder, load_and_merge_json_dicts
from rliable import library as rly
from rliable import metrics

from hetplug_benchmarl import cli
from hetplug_benchmarl.compare import engine, spec, stats
from hetplug_benchmarl.compare.metric import Curve, Metric
from hetplug_benchmarl.compare.summary import verdict

TINY = ["--frames", "300", "--frames-per-batch", "100", "--envs", "4", "--updates", "2", "--eval-episodes", "2"]  # fmt: skip
GRID = ["--task", "vmas/navigation", "--algorithm", "iql", "--plugins", "none", "shep", "--seeds", "2",
        *TINY, "--workers", "2", "--reps", "300"]  # fmt: skip
REPS = 300


def compare(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["compare", *argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def local_ray():
    started = engine.connect(engine.Engine(workers=2))
    yield
    engine.shutdown(started)


@pytest.fixture(scope="module")
def grid(local_ray, tmp_path_factory):
    out = tmp_path_factory.mktemp("grid") / "cmp"
    code, stdout, stderr = compare(*GRID, "--out", str(out))
    assert code == 0, stdout + stderr
    return out, stdout


def _oracle_scores(path: Path) -> float:
    """The documented metric, recomputed from the file: mean `return` over the evaluations
    after 75 % of the run's frames."""
    ((seeds,),) = [t.values() for t in json.loads(path.read_text())["vmas"].values()]
    (run,) = seeds.values()
    steps = [s for k, s in run.items() if k.startswith("step_")]
    end = max(s["step_count"] for s in steps)
    window = [np.mean(s["return"]) for s in steps if s["step_count"] > 0.75 * end]
    return float(np.mean(window))


def test_summary_equals_rliable_on_the_same_scores(grid):
    out, _ = grid
    summary = json.loads((out / "summary.json").read_text())
    scores = {
        v: [_oracle_scores(out / "runs" / v / f"seed_{s}.json") for s in (0, 1)] for v in ("iql", "iql+shep")
    }
    for v, values in scores.items():
        assert list(summary["variants"][v]["scores"].values()) == pytest.approx(values, abs=1e-12)
    # oracle: rliable called directly, as its README does
    iqm = lambda x: np.array([metrics.aggregate_iqm(x)])  # noqa: E731
    matrices = {v: np.array(s).reshape(-1, 1) for v, s in scores.items()}
    point, ci = rly.get_interval_estimates(matrices, iqm, reps=REPS, random_state=np.random.RandomState(0))
    for v in scores:
        got = summary["variants"][v]
        assert got["runs"] == 2
        assert got["iqm"] == pytest.approx(point[v][0], abs=1e-12)
        assert got["ci"] == pytest.approx(ci[v][:, 0].tolist(), abs=1e-12)
    pair = {"iql+shep,iql": (matrices["iql+shep"], matrices["iql"])}
    p, p_ci = rly.get_interval_estimates(pair, metrics.probability_of_improvement, reps=REPS,
                                         random_state=np.random.RandomState(0))  # fmt: skip
    got = summary["prob_improvement"]["iql+shep"]
    assert got["value"] == pytest.approx(p["iql+shep,iql"]) and got["over"] == "iql"
    assert got["ci"] == pytest.approx(np.ravel(p_ci["iql+shep,iql"]).tolist())
    # curves: rliable's per-frame IQM loop (its sample-efficiency recipe) on the runs' evaluations
    curve = summary["curves"]["iql"]
    assert curve["frames"] == [100, 200, 300]
    runs = [
        json.loads((out / "runs/iql" / f"seed_{s}.json").read_text())["vmas"]["navigation"]["iql"]
        for s in (0, 1)
    ]
    x = np.array(
        [[np.mean(r[f"seed_{s}"][f"step_{k}"]["return"]) for k in (1, 2, 3)] for s, r in enumerate(runs)]
    )
    per_frame = lambda m: np.array([metrics.aggregate_iqm(m[..., i]) for i in range(m.shape[-1])])  # noqa: E731
    point, ci = rly.get_interval_estimates({"iql": x[:, None, :]}, per_frame, reps=REPS,
                                           random_state=np.random.RandomState(0))  # fmt: skip
    np.testing.assert_allclose(curve["iqm"], point["iql"], atol=1e-12)
    np.testing.assert_allclose(curve["ci"], ci["iql"], atol=1e-12)


def test_grid_writes_benchmarl_json_progress_and_plots(grid):
    out, stdout = grid
    merged = get_raw_dict_from_multirun_folder(str(out / "runs"))
    files = sorted(str(p) for p in (out / "runs").rglob("*.json"))
    assert load_and_merge_json_dicts(files) == merged and len(files) == 4
    algos = merged["vmas"]["navigation"]
    assert sorted(algos) == ["iql", "iql+shep"]  # distinct names: the variants do not collide
    for algo in algos.values():
        assert sorted(algo) == ["seed_0", "seed_1"]
        assert [algo["seed_0"][f"step_{k}"]["step_count"] for k in (1, 2, 3)] == [100, 200, 300]
        assert len(algo["seed_0"]["step_3"]["return"]) == 2  # --eval-episodes
    summary = json.loads((out / "summary.json").read_text())
    assert summary["engine"] == {"name": "ray", "address": None, "workers": 2}
    assert summary["metric"]["key"] == "return" and summary["metric"]["last_fraction"] == 0.25
    assert list(summary["variants"]) == ["iql", "iql+shep"] and summary["failed"] == []
    progress = re.findall(
        r"^\[(\d)/4\] (iql\S*) seed (\d): done in \d+ s \(score [-+.\d]+\) \| .* ETA ", stdout, re.M
    )
    assert sorted(p[0] for p in progress) == ["1", "2", "3", "4"]
    assert "P(improvement over iql)" in stdout
    for name in ("aggregate.png", "curves.png"):
        assert (out / name).stat().st_size > 10_000


def test_rerun_skips_finished_runs_and_finishes_an_interrupted_grid(grid, tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    shutil.copytree(grid[0], out)  # copy2: modification times kept
    lost = out / "runs/iql+shep/seed_1.json"
    lost.unlink()  # as if the grid was interrupted before this run finished
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("seed_*.json")}
    code, stdout, stderr = compare(*GRID, "--out", str(out))
    assert code == 0, stdout + stderr
    assert "4 runs of vmas/navigation" in stdout and "3 already in" in stdout and "1 to run" in stdout
    assert re.findall(r"^\[1/1\] (.*?):", stdout, re.M) == ["iql+shep seed 1"]
    assert {p: p.stat().st_mtime_ns for p in before} == before  # finished runs were not run again
    assert lost.exists()
    # a complete grid: nothing runs, Ray is not even needed
    monkeypatch.setattr(engine, "connect", lambda *a, **k: pytest.fail("a finished grid started Ray"))
    code, stdout, _ = compare(*GRID, "--out", str(out))
    assert code == 0 and "4 already in" in stdout and "0 to run" in stdout
    assert json.loads((out / "summary.json").read_text())["variants"]["iql+shep"]["runs"] == 2
    # other settings in the same folder are refused, not mixed
    code, _, stderr = compare(*[a if a != "300" else "400" for a in GRID], "--out", str(out))
    assert code == 2 and "holds runs with settings.frames=300" in stderr


def test_a_run_that_raises_is_retried_reported_and_loses_no_other_run(local_ray, tmp_path):
    """A 3-D SHEP grid passes the option checks but fails inside the run (VMAS positions are 2-D)."""
    out = tmp_path / "cmp"
    bad = [
        "--set",
        "shep.grid_low=[-1,-1,-1]",
        "--set",
        "shep.grid_high=[1,1,1]",
        "--set",
        "shep.grid_shape=[2,2,2]",
    ]
    argv = ["--plugins", "none", "shep", "--seeds", "1", *TINY, "--reps", str(REPS), *bad, "--out", str(out)]
    code, stdout, stderr = compare(*argv)
    assert code == 1, stdout + stderr
    assert "[retry] iql+shep seed 0: failed (ValueError: positions must have shape [..., N, 3]" in stdout
    assert re.search(r"\] iql\+shep seed 0: FAILED after 2 attempts \(ValueError: positions", stdout)
    assert re.search(r"\] iql seed 0: done in", stdout)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["variants"]["iql"]["runs"] == 1 and summary["variants"]["iql+shep"]["runs"] == 0
    (failed,) = summary["failed"]
    assert failed["run"] == "iql+shep seed 0" and failed["error"].startswith(
        "ValueError: positions must have shape"
    )
    assert (out / "runs/iql/seed_0.json").exists() and not (out / "runs/iql+shep/seed_0.json").exists()
    trace = (out / "runs/iql+shep/seed_0.error").read_text()
    assert "ray::run_one()" in trace and 'cells.py", line' in trace and "\x1b[" not in trace
    assert "1 run(s) failed" in stderr


def test_engine_runs_plain_functions_and_retries_a_failure_once(local_ray):
    """The engine knows nothing of BenchMARL: any module-level function over labelled arguments."""
    errors, lines = [], []
    report = engine.run_tasks(json.loads, {"ok": "1.5", "bad": "{"}, engine.Engine(workers=2),
                              on_result=lambda label, r: f"= {r}", on_error=lambda *e: errors.append(e),
                              log=lines.append)  # fmt: skip
    assert report.finished == ["ok"] and list(report.failed) == ["bad"]
    assert report.failed["bad"].startswith("JSONDecodeError: Expecting property name")
    assert [(label, final) for label, _, final in errors] == [("bad", False), ("bad", True)]
    assert any(line.startswith("[1/2] ok: done in") and "(= 1.5)" in line for line in lines)
    assert any(line.startswith("[retry] bad: failed") for line in lines)


def test_collect_reads_a_hydra_multirun_of_hetplug_benchmarl_run(tmp_path):
    """`python -m hetplug_benchmarl.run -m hetplug=none,shep seed=0,1`: BenchMARL names both
    `iql` (its loader merges them into one), collect tells them apart by the jobs' hetplug group."""
    sweep = tmp_path / "multirun"
    args = [
        sys.executable, "-m", "hetplug_benchmarl.run", "-m", "algorithm=iql", "task=vmas/navigation",
        "hetplug=none,shep", "seed=0,1", "experiment.max_n_frames=200",
        "experiment.off_policy_collected_frames_per_batch=100", "experiment.off_policy_n_envs_per_worker=4",
        "experiment.off_policy_n_optimizer_steps=2", "experiment.off_policy_train_batch_size=16",
        "experiment.render=False", "experiment.loggers=[]", "experiment.evaluation=True",
        "experiment.evaluation_interval=100", "experiment.evaluation_episodes=2", "experiment.create_json=True",
        "experiment.checkpoint_at_end=False", f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(get_raw_dict_from_multirun_folder(str(sweep))["vmas"]["navigation"]) == ["iql"]
    code, stdout, stderr = compare("--collect", str(sweep), "--reps", str(REPS))
    assert code == 0, stdout + stderr
    assert "collected 4 runs of vmas/navigation" in stdout
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["engine"]["name"] == "collect" and summary["task"] == "vmas/navigation"
    assert {v: s["runs"] for v, s in summary["variants"].items()} == {"iql": 2, "iql+shep": 2}
    assert set(summary["prob_improvement"]) == {"iql+shep"}
    assert summary["curves"]["iql+shep"]["frames"] == [100, 200]
    for name in ("aggregate.png", "curves.png"):
        assert (sweep / name).stat().st_size > 10_000
    # the summary written into the folder is not mistaken for a run on the next collect
    assert compare("--collect", str(sweep), "--reps", "50", "--out", str(tmp_path / "again"))[0] == 0


BAD = [
    (["--task", "vmas/navgation"], "unknown task 'vmas/navgation' (did you mean 'vmas/navigation'?)"),
    (["--algorithm", "iqll"], "unknown algorithm 'iqll' (did you mean 'iql'?)"),
    (["--plugins", "none", "shepp"], "unknown plugin 'shepp' (did you mean 'shep'?)"),
    (["--set", "shep.group_herr=true"], "unknown option hetplug.shep.group_herr"),
    (["--set", "shep.group_herr=true"], "did you mean 'group_her'?"),
    (["--set", "shep"], "--set 'shep': expected PLUGIN.OPTION=VALUE"),
    (["--set", "lbs.budget=1"], "plugin 'lbs' is in no variant"),
    (
        ["--plugins", "none", "per+shep"],
        "plugins per, shep all implement hetplug_replay_add; select only one",
    ),
    (["--plugins", "none", "shppo"], "plugin 'shppo' is not available with off-policy Iql"),
    (
        ["--plugins", "none", "lbs", "--algorithm", "qmix"],
        "plugin 'lbs' shares experience between independent",
    ),
    (
        ["--model", "slot", "--plugins", "none", "shppo", "--algorithm", "mappo"],
        "plugin shppo needs the shppo model",
    ),
    (
        ["--model", "mlp", "mlp", "mlp"],
        "--model: give one model for all variants or one per variant (2), got 3",
    ),
    (
        ["--algorithm", "happo", "--plugins", "none", "shppo", "--model", "shppo", "mlp"],
        "--model mlp: plugin shppo needs the shppo model",
    ),
    (["--plugins", "none", "none", "--model", "mlp", "auto"], "variant 'none' (model mlp) is given twice"),
    (["--plugins", "none", "none"], "variant 'none' is given twice"),
    (["--model", "mlp", "slott"], "argument --model: invalid choice: 'slott'"),
    (["--set", "experiment.lrr=1e-4"], "not a field of BenchMARL's ExperimentConfig (did you mean 'lr'?)"),
    (["--set", "experiment.max_n_frames=5"], "--set experiment.max_n_frames: compare sets it from --frames"),
    (["--set", "experiment.lr=fast"], "--set experiment.lr='fast': expected a float like the default 5e-05"),
    (["--envs", "3"], "--frames-per-batch (100) must be a multiple of --envs (3)"),
    (["--seeds", "two"], "argument --seeds: invalid int value: 'two'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--address", "127.0.0.1:9"], "--address 127.0.0.1:9: cannot reach a Ray cluster there"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_names_and_options_are_one_line_and_exit_2_before_any_run(argv, message, tmp_path, monkeypatch):
    from hetplug_benchmarl.compare import run

    monkeypatch.setattr(run, "build_experiment", lambda *a, **k: pytest.fail("an experiment was built"))
    monkeypatch.setattr(engine, "run_tasks", lambda *a, **k: pytest.fail("runs were started"))
    base = ["--plugins", "none", "shep", "--seeds", "1", *TINY, "--out", str(tmp_path / "out")]
    code, stdout, stderr = compare(*base, *argv)
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("hetplug compare: error: ") and message in stderr
    assert "Traceback" not in stdout + stderr and not (tmp_path / "out").exists()


def test_cli_lists_compare_and_suggests_a_command(capsys):
    assert cli.main(["--help"]) == 0 and "hetplug compare" in capsys.readouterr().out
    assert cli.main(["compar"]) == 2 and "(did you mean 'compare'?)" in capsys.readouterr().err


def test_set_values_are_yaml_typed_and_nested():
    got = spec.parse_sets(
        ["shep.group_her=false", "shep.grid_shape=[4, 4]", "hetdps.cvae.epochs=2", "per.alpha=1e-1"]
    )
    assert got == {"shep": {"group_her": False, "grid_shape": [4, 4]}, "hetdps": {"cvae": {"epochs": 2}},
                   "per": {"alpha": 0.1}}  # fmt: skip


def test_variant_names_model_rule_and_run_order():
    grid = spec.make_grid("vmas/navigation", "iql", ["none", "hetdps"], seeds=2,
                          settings=spec.Settings(frames=600, frames_per_batch=100, envs=4))  # fmt: skip
    assert [v.name for v in grid.variants] == ["iql", "iql+hetdps"]
    assert grid.model == "slot"  # a plugin needing a model gives it to every variant (demo.model_for)
    assert [r.label for r in grid.runs()] == [
        "iql seed 0",
        "iql+hetdps seed 0",
        "iql seed 1",
        "iql+hetdps seed 1",
    ]
    assert grid.runs()[1].options == {"hetdps": {"interval": 1}}  # about six regroupings per run
    assert (
        spec.make_grid("vmas/balance", "mappo", ["shppo+per"], seeds=1).variants[0].name == "mappo+shppo+per"
    )


def test_one_model_per_variant_keeps_names_distinct_and_says_the_model():
    """SHPPO against its backbone as the paper runs it: HAPPO on BenchMARL's MLP against HAPPO +
    SHPPO on the SHPPO model. A variant is named after its model only when its plugins do not
    imply that model."""
    tiny = spec.Settings(frames=600, frames_per_batch=100, envs=4)
    grid = spec.make_grid("vmas/navigation", "happo", ["none", "shppo"], seeds=1, model=["mlp", "shppo"],
                          settings=tiny)  # fmt: skip
    assert [v.name for v in grid.variants] == ["happo", "happo+shppo"]
    assert [(r.variant.name, r.model) for r in grid.runs()] == [("happo", "mlp"), ("happo+shppo", "shppo")]
    assert [r.config()["model"] for r in grid.runs()] == ["mlp", "shppo"] and grid.model == "mlp/shppo"
    ablation = spec.make_grid("vmas/navigation", "happo", ["none", "shppo"], seeds=1, model=["shppo", "auto"],
                              settings=tiny)  # fmt: skip
    assert [v.name for v in ablation.variants] == ["happo@shppo", "happo+shppo"]
    assert ablation.models == ("shppo", "shppo")
    models_only = spec.make_grid("vmas/navigation", "iql", ["none", "none"], seeds=1, model=["mlp", "slot"],
                                 settings=tiny)  # fmt: skip
    assert [v.name for v in models_only.variants] == ["iql", "iql@slot"]
    shared = spec.make_grid(
        "vmas/navigation", "happo", ["none", "shppo"], seeds=1, model="auto", settings=tiny
    )
    assert [v.name for v in shared.variants] == ["happo", "happo+shppo"] and shared.models == (
        "shppo",
        "shppo",
    )


def test_experiment_fields_reach_every_variant_and_its_config():
    from hetplug_benchmarl.compare.run import experiment_config

    grid = spec.make_grid("vmas/navigation", "happo", ["none", "shppo"], seeds=1, model=["mlp", "shppo"],
                          sets=["experiment.lr=5e-4", "experiment.gamma=0.95", "shppo.lambda_e=0.01"],
                          settings=spec.Settings(frames=600, frames_per_batch=100, envs=4))  # fmt: skip
    for run in grid.runs():
        assert run.experiment == {"lr": 5e-4, "gamma": 0.95}
        assert run.config()["experiment"] == {"lr": 5e-4, "gamma": 0.95}
        cfg = experiment_config(run, "unused")
        assert (cfg.lr, cfg.gamma, cfg.max_n_frames) == (5e-4, 0.95, 600)
    assert "experiment" not in spec.make_grid("vmas/navigation", "iql", ["none"], seeds=1).runs()[0].config()


def test_per_variant_models_build_their_own_benchmarl_model_and_json_name(tmp_path):
    from benchmarl.models.mlp import MlpConfig

    from hetplug_benchmarl import SHPPOModelConfig
    from hetplug_benchmarl.compare.run import build_experiment

    grid = spec.make_grid("vmas/navigation", "happo", ["none", "none"], seeds=1, model=["mlp", "shppo"],
                          settings=spec.Settings(frames=200, frames_per_batch=100, envs=2))  # fmt: skip
    built = {}
    for run in grid.runs():
        (tmp_path / run.variant.name).mkdir()
        experiment = build_experiment(run, tmp_path / run.variant.name)
        written = experiment.logger.json_writer.data["vmas"]["navigation"]
        built[run.variant.name] = (type(experiment.model_config), list(written))
        experiment.close()
    assert built == {"happo": (MlpConfig, ["happo"]), "happo@shppo": (SHPPOModelConfig, ["happo@shppo"])}


def test_verdict_never_calls_two_runs_a_difference():
    """Two runs each, one variant's both above the other's: every resample gives P = 1, the CI
    collapses to [1, 1]; that is not evidence."""
    p = stats.probability_of_improvement({"a": [0.0, 0.1], "b": [1.0, 1.1]}, "a", reps=200)["b"]
    assert p["value"] == 1.0 and p["ci"] == [1.0, 1.0]
    assert "inconclusive" in verdict(p, runs=2)
    assert verdict(p, runs=5).startswith("better than a beyond noise")
    assert verdict({**p, "ci": [0.3, 0.9]}, runs=5).startswith("not distinguishable")


def test_metric_window_is_the_last_quarter_of_frames():
    m = Metric()
    assert m.score(Curve((1000, 2000, 3000, 4000, 5000, 6000), (0, 0, 0, 0, 1.0, 3.0))) == 2.0
    assert m.score(Curve((100, 200, 300, 400), (5.0, 5.0, 5.0, 1.0))) == 1.0  # 300 is not after 75 %
    assert Metric(last_fraction=1.0).score(Curve((1, 2), (1.0, 3.0))) == 2.0


def test_every_model_choice_builds_its_benchmarl_config():
    """mlp, slot (HetDPS) and shppo each give the model config the adapter registers."""
    from benchmarl.models.mlp import MlpConfig

    from hetplug_benchmarl import SHPPOModelConfig, SlotModelConfig
    from hetplug_benchmarl.compare.run import model_config
    from hetplug_benchmarl.compare.spec import MODELS

    built = {m: type(model_config(m)) for m in MODELS if m != "auto"}
    assert built == {"mlp": MlpConfig, "slot": SlotModelConfig, "shppo": SHPPOModelConfig}


def test_image_observations_get_an_mlp_that_flattens_them():
    """MAgent2's [13, 13, 5] views: the MLP flattens 3 feature dims; models that take flat
    vectors only are refused before any run."""
    from hetplug_benchmarl.compare.run import model_config
    from hetplug_benchmarl.compare.tasks import feature_dims

    assert (feature_dims("magent/battle"), feature_dims("vmas/navigation")) == (3, 1)
    assert model_config("mlp", 3).num_feature_dims == 3
    grid = spec.make_grid("magent/battle", "iql", ["none", "shep"], seeds=1)
    assert grid.models == ("mlp", "mlp")
    with pytest.raises(spec.SpecError, match="magent/battle's observations are not flat vectors"):
        spec.make_grid("magent/battle", "iql", ["none", "hetdps"], seeds=1)
