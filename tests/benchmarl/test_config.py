"""hetplug's configuration in BenchMARL: wrap(), the callback, the Hydra group; errors before training."""

from __future__ import annotations

import pickle

import pytest

import hetplug_benchmarl
from hetplug_benchmarl import HetplugCallback


def test_callback_pickles_without_its_experiment(experiment):
    cb = HetplugCallback(["per"], {"per": {"priority_exponent": 0.5}})
    exp = experiment("iql", callbacks=[cb])
    clone = pickle.loads(pickle.dumps(cb))
    assert clone.experiment is None and clone.options == {"per": {"priority_exponent": 0.5}}
    with open(exp.folder_name / "config.pkl", "rb") as f:
        for _ in range(7):
            pickle.load(f)
        (restored,) = pickle.load(f)
    assert restored.plugins == ["per"]


@pytest.mark.parametrize(
    "plugins, kwargs, message",
    [
        (["nope"], {}, "unknown hetplug plugin 'nope'"),
        (["shep"], {"shep": {"grid_shap": (4, 4)}}, "shep.grid_shap"),
        (["shep"], {"shep": {"alpha": "high"}}, "shep: alpha must be a number, got alpha='high'"),
        (["shep"], {"positions": {"slice": [0, 40]}}, "positions.slice=[0, 40] is out of range"),
        (["shep"], {"positions": {"key": "nope"}}, "positions.key=['nope']"),
        (["shep"], {"opponents": {"group": "enemies"}}, "opponents.group='enemies'"),
        (["shep"], {"positions": {"extractor": "mpe"}}, "positions.extractor='mpe' is EPyMARL's"),
    ],
)
def test_bad_configuration_fails_at_wrap_time(experiment, plugins, kwargs, message):
    exp = experiment("iql")
    buffer = exp.replay_buffers["agents"]
    error = TypeError if "must be a number" in message else ValueError  # a string for a number
    with pytest.raises(error, match=message.replace("[", r"\[").replace("(", r"\(")):
        hetplug_benchmarl.wrap(exp, plugins, **kwargs)
    assert exp.replay_buffers["agents"] is buffer and exp.callbacks == []


def test_unsupported_combination_is_refused_before_training(experiment):
    exp = experiment(on_policy=True)
    with pytest.raises(ValueError, match="plugin 'lbs' is not available with on-policy Mappo"):
        hetplug_benchmarl.wrap(exp, ["lbs"])
    assert exp.n_iters_performed == 0


def test_hydra_run_with_a_hetplug_group(tmp_path):
    """`python -m hetplug_benchmarl.run ... model=layers/hetplug_slot_mlp hetplug=hetdps`."""
    import subprocess
    import sys

    args = [
        sys.executable, "-m", "hetplug_benchmarl.run", "algorithm=iql", "task=vmas/navigation",
        "model=layers/hetplug_slot_mlp", "model.num_cells=[16]", "hetplug=hetdps",
        "hetplug.hetdps.interval=1", "+hetplug.hetdps.cvae={epochs: 2}",
        "experiment.max_n_frames=200", "experiment.off_policy_collected_frames_per_batch=100",
        "experiment.off_policy_n_envs_per_worker=4", "experiment.off_policy_n_optimizer_steps=2",
        "experiment.off_policy_train_batch_size=16", "experiment.render=False", "experiment.loggers=[]",
        "experiment.evaluation=False", "experiment.create_json=False", "experiment.checkpoint_at_end=False",
        f"experiment.save_folder={tmp_path}", f"hydra.run.dir={tmp_path}/hydra",
    ]  # fmt: skip
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "hetdps" in out.stdout and "100%" in out.stderr


def test_hydra_hetplug_group_rejects_unknown_keys():
    from hetplug_benchmarl.run import callback_from_config

    with pytest.raises(ValueError, match=r"unknown key hetplug.plugin \(did you mean .plugins.\?\)"):
        callback_from_config({"plugin": ["shep"]})
    with pytest.raises(ValueError, match="unknown hetplug plugin 'shap'"):
        callback_from_config({"plugins": ["shap"]})


@pytest.mark.parametrize(
    "name",
    ["none", "per", "shep", "lbs", "hetdps", "shppo", "shppo_zero_latent_inputs", "shppo_zero_latents",
     "shppo_no_value_loss", "shppo_no_entropy_loss", "shppo_no_distance_loss"],
)  # fmt: skip
def test_every_hydra_hetplug_yaml_builds_a_callback(name):
    import yaml

    from hetplug_benchmarl.models import CONF
    from hetplug_benchmarl.run import callback_from_config

    cb = callback_from_config(yaml.safe_load((CONF / "hetplug" / f"{name}.yaml").read_text()))
    assert cb.plugins == ([] if name == "none" else [name.split("_")[0]])


@pytest.mark.parametrize("name", ["per", "shep", "lbs", "hetdps", "shppo"])
def test_hydra_method_yamls_keep_the_papers_defaults(name):
    """A group yaml sets only where the host's data is (positions, the grid over VMAS's
    world box); every method switch stays at its default, the paper's (SHEP: Algorithm 1
    with spatial priority, intrinsic reward and Group-HER on)."""
    import dataclasses
    from importlib.metadata import entry_points

    import yaml

    from hetplug import parse_config
    from hetplug_benchmarl.models import CONF

    cfg = parse_config(yaml.safe_load((CONF / "hetplug" / f"{name}.yaml").read_text()))
    options = cfg.as_dict().get(name, {})
    plugin = next(ep for ep in entry_points(group="hetplug") if ep.name == name).load()
    defaults = {f.name: f.default for f in dataclasses.fields(plugin.config_class)}
    where = {"grid_low", "grid_high", "grid_shape", "interval"}  # the task's geometry, the regrouping period
    changed = {k: v for k, v in options.items() if k not in where and v != defaults.get(k)}
    assert changed == {}


def test_hydra_entry_help_lists_hetplugs_groups(capsys):
    from hetplug_benchmarl.run import entry

    entry(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m hetplug_benchmarl.run")
    for name in ("happo", "iql", "hetplug", "shep", "hetdps", "layers/hetplug_slot_mlp", "vmas/navigation"):
        assert name in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["algorithm=iqll", "task=vmas/navigation"], "unknown algorithm 'iqll' (did you mean 'iql'?)"),
        (["algorithm=iql", "task=vmas/navigaton"], "unknown task 'vmas/navigaton' (did you mean 'vmas/navigation'?)"),
        (["algorithm=iql", "task=vmas/navigation", "hetplug=shepp"], "unknown hetplug 'shepp' (did you mean 'shep'?)"),
        (["algorithm=iql", "task=vmas/navigation", "hetplug=shep", "hetplug.shep.grid_shpe=3"],
         "unknown option hetplug.shep.grid_shpe (did you mean 'grid_shape'?)"),
    ],
)  # fmt: skip
def test_hydra_mistakes_are_one_line_before_hydra_starts(capsys, argv, message):
    from hetplug_benchmarl.run import entry

    with pytest.raises(SystemExit) as exc:
        entry(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["algorithm=mappo", "hetplug=lbs"], "plugin 'lbs' is not available with on-policy Mappo"),
        (["algorithm=iql", "hetplug=shppo"], "plugin 'shppo' is not available with off-policy Iql"),
        (["algorithm=iql", "hetplug=hetdps"], "plugin 'hetdps' needs model=layers/hetplug_slot_mlp, got model=layers/mlp"),
        (["algorithm=mappo", "hetplug=shppo", "model=layers/hetplug_slot_mlp"],
         "plugin 'shppo' needs model=layers/hetplug_shppo, got model=layers/hetplug_slot_mlp"),
    ],
)  # fmt: skip
def test_hydra_refuses_a_selection_the_algorithm_cannot_run_before_any_environment(tmp_path, argv, message):
    """Checked once Hydra composed the config, before BenchMARL builds anything (the config
    is printed only after the checks)."""
    import os
    import subprocess
    import sys

    args = [
        sys.executable,
        "-m",
        "hetplug_benchmarl.run",
        *argv,
        "task=vmas/navigation",
        f"hydra.run.dir={tmp_path}",
    ]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert out.returncode == 2 and message in out.stderr and out.stderr.strip().count("\n") == 0
    assert "experiment:" not in out.stdout  # the composed config was never printed: nothing was built


def test_hydra_refuses_a_logger_whose_package_is_missing(monkeypatch):
    """BenchMARL's default loggers are [csv, wandb] and BenchMARL does not install wandb: the
    entry names the package and the override instead of failing inside BenchMARL's setup."""
    import importlib.util

    from hetplug_benchmarl.run import check_loggers

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    message = check_loggers(["csv", "wandb"])
    assert message == (
        "experiment.loggers includes 'wandb', whose package is not installed: pip install wandb, "
        "or run with experiment.loggers=[csv]"
    )
    assert check_loggers(["csv"]) is None and check_loggers([]) is None


def test_hydra_refuses_rendering_when_torchvision_does_not_import(monkeypatch):
    """Videos are written with torchvision; a torchvision that fails to import is named with
    its own message, before training (not at the first evaluation)."""
    import subprocess

    from hetplug_benchmarl.run import check_render

    calls = []

    def fake_run(argv, **kwargs):
        calls.append(argv)
        return subprocess.CompletedProcess(
            argv, 1, "", "Traceback ...\nRuntimeError: operator torchvision::nms does not exist\n"
        )

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert check_render(False, ["csv"]) is None and check_render(True, []) is None and calls == []
    message = check_render(True, ["csv"])
    assert message == (
        "experiment.render=True records evaluation videos with torchvision, which fails to import here "
        "(RuntimeError: operator torchvision::nms does not exist); run with experiment.render=False, or install "
        "the torchvision built for your torch"
    )
    assert calls[0][1:] == ["-c", "import torchvision"]
