"""Zero-shot team size in BenchMARL: a trained policy run, without training, by a team of
another size (the SHPPO paper's scalability tests, section V-D).

    copy_policy(trained, other)                        # refuses what cannot transfer
    evaluate_team_sizes(trained, [2, 3, 4])            # {n: mean episode reward}

A policy transfers when none of its parameters depends on the number of agents: a shared
network (BenchMARL's MLP with ``share_policy_params=True``, hetplug's SHPPO model) on
observations whose size does not depend on the team (VMAS navigation's). Per-agent networks
(``share_policy_params=False``: parameters stacked ``[n_agents, ...]``) and inputs that grow
with the team are refused, naming the parameter.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from typing import Any

import torch
from torchrl.envs.utils import ExplorationType, set_exploration_type


def _describe(value: Any) -> str:
    return f"shape {tuple(value.shape)}" if torch.is_tensor(value) else repr(value)


def _dims(value: Any) -> tuple[int, ...]:
    if torch.is_tensor(value):
        return tuple(value.shape)
    return tuple(value) if isinstance(value, torch.Size) else ()


def transfer_problems(source, target, group: str = "agents") -> list[str]:
    """Why ``source``'s policy for ``group`` cannot be loaded into ``target``'s (an empty
    list when it can): every entry of the policy's state dict must exist in the target with
    the same shape (tensors) or value (TensorDict metadata such as its batch size)."""
    n_src, n_dst = len(source.group_map[group]), len(target.group_map[group])
    mine = target.group_policies[group].state_dict()
    problems = []
    for key, value in source.group_policies[group].state_dict().items():
        if key not in mine:
            problems.append(f"{key!r} is missing from the target's policy")
            continue
        other = mine[key]
        if torch.is_tensor(value) != torch.is_tensor(other):
            problems.append(
                f"{key!r} is {_describe(value)} in the source and {_describe(other)} in the target"
            )
            continue
        same = value.shape == other.shape if torch.is_tensor(value) else value == other
        if same:
            continue
        per_agent = n_src != n_dst and n_src in _dims(value)
        why = (
            f"it depends on the number of agents ({n_src} -> {n_dst}: per-agent parameters, e.g. "
            "share_policy_params=False)"
            if per_agent
            else "the model's input or output size differs (observations that depend on the team size?)"
        )
        problems.append(
            f"{key!r} is {_describe(value)} in the source and {_describe(other)} in the target: {why}"
        )
    return problems


def copy_policy(source, target, group: str = "agents") -> None:
    """Load ``source``'s trained policy for ``group`` into ``target`` (another experiment,
    e.g. the same task with a different number of agents): SHPPO's zero-shot transfer.

    Raises:
        ValueError: when a parameter of the policy depends on the number of agents or the
            input/output sizes differ; the message names every such parameter.
    """
    problems = transfer_problems(source, target, group)
    if problems:
        raise ValueError(
            f"the policy of group {group!r} cannot be transferred to the target experiment "
            f"({len(source.group_map[group])} -> {len(target.group_map[group])} agents): "
            + "; ".join(problems)
        )
    target.group_policies[group].load_state_dict(source.group_policies[group].state_dict())


@torch.no_grad()
def evaluate(experiment, group: str = "agents", deterministic: bool | None = None) -> float:
    """Mean episode reward of ``group`` over ``experiment.config.evaluation_episodes``
    episodes of its test environment, without training: per episode the sum over steps (up
    to its first done) of the agents' mean reward, averaged over episodes, as BenchMARL's
    ``eval/<group>/reward/episode_reward_mean``. ``deterministic`` (default: the
    experiment's ``evaluation_deterministic_actions``) acts with latent and action means."""
    cfg = experiment.config
    if deterministic is None:
        deterministic = cfg.evaluation_deterministic_actions
    env = experiment.test_env
    mode = ExplorationType.DETERMINISTIC if deterministic else ExplorationType.RANDOM
    repeats = 1 if env.batch_size != torch.Size([]) else cfg.evaluation_episodes
    returns = []
    with set_exploration_type(mode):
        for _ in range(repeats):
            rollout = env.rollout(
                max_steps=experiment.max_steps,
                policy=experiment.policy,
                auto_cast_to_device=True,
                break_when_any_done=False,
            )
            returns.append(_episode_returns(rollout, group))
    return float(torch.cat(returns).mean())


def _episode_returns(rollout, group: str) -> torch.Tensor:
    """``[E]`` returns of a rollout ``[*E, T]``: the first episode of each environment."""
    keys = rollout.keys(True, True)
    reward = rollout.get(
        ("next", group, "reward") if ("next", group, "reward") in keys else ("next", "reward")
    )
    done_key = ("next", group, "done") if ("next", group, "done") in keys else ("next", "done")
    done = rollout.get(done_key)
    t_dim = rollout.batch_dims - 1
    reward = reward.reshape(*rollout.batch_size, -1).mean(-1)  # the agents' mean, [*E, T]
    done = done.reshape(*rollout.batch_size, -1).any(-1)
    before = done.long().cumsum(t_dim) - done.long()  # dones strictly before each step
    return (reward * (before == 0)).sum(t_dim).reshape(-1)


def with_team_size(experiment, n_agents: int, key: str = "n_agents", folder: str | None = None):
    """A new experiment like ``experiment`` (task, algorithm, models, seed, settings) whose
    task has ``n_agents`` agents (``task.config[key]``), built without loggers, json or
    checkpoints."""
    from benchmarl.experiment import Experiment

    task = copy.deepcopy(experiment.task)
    if key not in task.config:
        raise ValueError(
            f"the task's config has no {key!r} to set the team size (its keys: {sorted(task.config)})"
        )
    task.config[key] = n_agents
    cfg = copy.deepcopy(experiment.config)
    cfg.loggers, cfg.create_json, cfg.checkpoint_interval, cfg.checkpoint_at_end = [], False, 0, False
    cfg.restore_file, cfg.render = None, False
    cfg.save_folder = folder or tempfile.mkdtemp(prefix="hetplug_transfer_")
    return Experiment(
        task=task,
        algorithm_config=experiment.algorithm_config,
        model_config=experiment.model_config,
        critic_model_config=experiment.critic_model_config,
        seed=experiment.seed,
        config=cfg,
    )


def evaluate_team_sizes(
    trained,
    sizes: Sequence[int],
    group: str = "agents",
    key: str = "n_agents",
    deterministic: bool | None = None,
) -> dict[int, float]:
    """``{n: mean episode reward}``: ``trained``'s policy for ``group`` copied
    (:func:`copy_policy`) into an experiment with ``n`` agents per size and evaluated there
    (:func:`evaluate`), without training. Single-group tasks whose team size is
    ``task.config[key]`` (VMAS: ``n_agents``)."""
    results = {}
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="hetplug_transfer_") as folder:
            other = with_team_size(trained, int(n), key, folder)
            copy_policy(trained, other, group)
            results[int(n)] = evaluate(other, group, deterministic)
    return results
