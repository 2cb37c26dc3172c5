"""Builders of real BenchMARL 1.5.2 experiments on VMAS navigation, shrunk to a few
iterations on CPU (BenchMARL's own test conftest does the same)."""

from __future__ import annotations

import pytest
import torch
from benchmarl.algorithms import IppoConfig, MappoConfig
from benchmarl.environments import VmasTask
from benchmarl.experiment import Experiment, ExperimentConfig
from benchmarl.models.mlp import MlpConfig

import hetplug_benchmarl
from hetplug_benchmarl.demo import ALGORITHMS as OFF_POLICY

ENVS, STEPS, ITERS = 4, 25, 3
#: hetdps options small enough for a few iterations
HETDPS = {"interval": 2, "cvae": {"epochs": 3}, "fit_samples": 128, "distance_samples": 64}
#: Group-HER where every step qualifies (threshold below any Moran's I)
HER = {
    "group_her": True,
    "her_moran_threshold": -2.0,
    "her_min_length": 3,
    "her_max_fraction": 1.0,
    "her_reward": 1.0,
}


def quiet_config(folder) -> ExperimentConfig:
    """BenchMARL's experiment config for tests: no rendering, loggers, json, evaluation or
    periodic checkpoints, saving under ``folder``."""
    cfg = ExperimentConfig.get_from_yaml()
    cfg.render = False  # torchvision does not import here (FACTS.md)
    cfg.loggers = []
    cfg.create_json = False
    cfg.evaluation = False
    cfg.save_folder = str(folder)
    cfg.checkpoint_interval = 0
    return cfg


def make_experiment(
    folder, algorithm="iql", callbacks=None, restore=None, on_policy=False, iters=ITERS, max_steps=None
):
    cfg = quiet_config(folder)
    cfg.checkpoint_at_end = True
    cfg.off_policy_collected_frames_per_batch = ENVS * STEPS
    cfg.off_policy_n_envs_per_worker = ENVS
    cfg.off_policy_n_optimizer_steps = 2
    cfg.off_policy_train_batch_size = 32
    cfg.off_policy_memory_size = 2000
    cfg.on_policy_collected_frames_per_batch = ENVS * STEPS
    cfg.on_policy_n_envs_per_worker = ENVS
    cfg.on_policy_n_minibatch_iters = 1
    cfg.on_policy_minibatch_size = 50
    cfg.max_n_frames = iters * ENVS * STEPS
    cfg.restore_file = restore
    if on_policy:
        algo = (IppoConfig if on_policy == "ippo" else MappoConfig).get_from_yaml()
    else:
        algo = OFF_POLICY[algorithm].get_from_yaml()
    task = VmasTask.NAVIGATION.get_from_yaml()
    if max_steps is not None:  # short episodes: several inside each collected row
        task.config["max_steps"] = max_steps
    return Experiment(
        task=task,
        algorithm_config=algo,
        model_config=MlpConfig.get_from_yaml(),
        seed=0,
        config=cfg,
        callbacks=callbacks,
    )


@pytest.fixture
def experiment(tmp_path):
    """``experiment(algorithm="iql", callbacks=None, restore=None, on_policy=False, iters=3,
    max_steps=None, folder=tmp_path)``: a shrunk BenchMARL experiment (MLP policy)."""

    def build(*args, folder=None, **kwargs):
        return make_experiment(folder or tmp_path, *args, **kwargs)

    return build


@pytest.fixture
def slot_experiment(tmp_path):
    """``slot_experiment(on_policy=False, iters=4, folder=tmp_path, **model)``: IQL (or MAPPO)
    with hetplug's slot model as the policy (HetDPS)."""

    def build(on_policy=False, iters=4, folder=None, **model):
        exp = make_experiment(folder or tmp_path, "iql", on_policy=on_policy, iters=iters)
        return Experiment(
            task=VmasTask.NAVIGATION.get_from_yaml(),
            algorithm_config=exp.algorithm_config,
            model_config=hetplug_benchmarl.SlotModelConfig(num_cells=[32, 32], **model),
            critic_model_config=MlpConfig.get_from_yaml(),
            seed=0,
            config=exp.config,
        )

    return build


@pytest.fixture
def shppo_experiment(tmp_path):
    """``shppo_experiment(n_agents=3, iters=3, folder=tmp_path, rnn=True, algorithm="mappo")``:
    an on-policy algorithm (mappo, ippo, happo) with hetplug's SHPPO model as the actor
    (recurrent unless ``rnn=False``)."""

    def build(n_agents=3, iters=3, folder=None, rnn=True, algorithm="mappo"):
        task = VmasTask.NAVIGATION.get_from_yaml()
        task.config["n_agents"] = n_agents
        folder = folder or tmp_path
        folder.mkdir(parents=True, exist_ok=True)
        base = make_experiment(folder, on_policy=algorithm if algorithm == "ippo" else True, iters=iters)
        algo = (
            hetplug_benchmarl.HappoConfig.get_from_yaml() if algorithm == "happo" else base.algorithm_config
        )
        return Experiment(
            task=task,
            algorithm_config=algo,
            model_config=hetplug_benchmarl.SHPPOModelConfig(num_cells=32, latent_dim=2, rnn=rnn),
            critic_model_config=MlpConfig.get_from_yaml(),
            seed=0,
            config=base.config,
        )

    return build


def losses_of(exp, data, seed=0) -> dict[str, torch.Tensor]:
    """The group's loss terms on ``data`` (a clone), detached."""
    return losses_of_module(exp.losses["agents"], data, seed)


def losses_of_module(loss, data, seed=0) -> dict[str, torch.Tensor]:
    """``loss``'s terms on ``data`` (a clone), detached."""
    torch.manual_seed(seed)
    out = loss(data.clone())
    return {k: v.detach().clone() for k, v in out.items() if k.startswith("loss")}
