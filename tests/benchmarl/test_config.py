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
    ],
)
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
