"""``magent/battle`` for BenchMARL 1.5.2, which ships MAgent2 only for adversarial_pursuit.

Follows BenchMARL's conventions (``benchmarl/environments/magent/``): a ``TaskClass``
(:class:`BattleClass`), a ``Task`` enum (:class:`MAgentBattleTask`), a config dataclass
(:class:`BattleConfig`) and a yaml (``hetplug_benchmarl/conf/task/magent/battle.yaml``).
Importing :mod:`hetplug_benchmarl.tasks` registers ``"magent/battle"`` in BenchMARL's
``task_config_registry``, so Hydra runs take ``task=magent/battle``.

One agent group, ``"red"``, learns; blue is a fixed policy inside the environment
(:class:`~hetplug_benchmarl.tasks.battle_env.BattleEnv`, docs/benchmarl.md, "MAgent2 battle").
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from benchmarl.environments.common import Task, TaskClass
from benchmarl.utils import _read_yaml_config
from tensordict import TensorDictBase
from torchrl.data import Composite
from torchrl.envs import EnvBase

from hetplug_benchmarl.tasks.battle_env import OPPONENTS, BattleEnv

YAML = Path(__file__).resolve().parent.parent / "conf" / "task" / "magent" / "battle.yaml"


@dataclass
class BattleConfig:
    """Options of ``magent/battle`` (defaults: ``conf/task/magent/battle.yaml``)."""

    map_size: int = 30
    """Side of the square map; magent2 places 0.04 x map_size^2 agents per team (30: 30 v 30)."""
    max_cycles: int = 200
    """Steps until the episode is truncated (then the team with more agents alive wins)."""
    opponent: str = "greedy"
    """Blue's fixed policy: ``"greedy"`` (scripted: attack the weakest red in range, else
    move towards the nearest red) or ``"random"``."""
    win_reward: float = 5.0
    """Added to each red agent that acted in the last step of an episode red won."""
    step_reward: float = -0.005
    """magent2: reward every step."""
    dead_penalty: float = -0.1
    """magent2: reward when killed."""
    attack_penalty: float = -0.1
    """magent2: reward for any attack."""
    attack_opponent_reward: float = 0.2
    """magent2: reward added for attacking an opponent (a kill gives 5, fixed in magent2)."""
    minimap_mode: bool = False
    """magent2: add the global minimap channels to the observation (not with ``greedy``)."""
    extra_features: bool = False
    """magent2: add id, last action and last reward channels (not with ``greedy``)."""

    def __post_init__(self) -> None:
        if not isinstance(self.map_size, int) or self.map_size < 12:
            raise ValueError(f"map_size must be an integer >= 12 (magent2), got map_size={self.map_size!r}")
        if not isinstance(self.max_cycles, int) or self.max_cycles < 1:
            raise ValueError(f"max_cycles must be an integer >= 1, got max_cycles={self.max_cycles!r}")
        if self.opponent not in OPPONENTS:
            raise ValueError(f"opponent must be one of {OPPONENTS}, got opponent={self.opponent!r}")


def battle_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` checked against :class:`BattleConfig`; unknown keys are named."""
    names = [f.name for f in fields(BattleConfig)]
    unknown = sorted(set(config) - set(names))
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} of task magent/battle; options: {', '.join(names)}")
    return asdict(BattleConfig(**config))


class BattleClass(TaskClass):
    """MAgent2 battle: group ``"red"`` learns against a fixed blue team."""

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        super().__init__(name=name, config=battle_config(dict(config)))

    def get_env_fun(
        self, num_envs: int, continuous_actions: bool, seed: int | None, device
    ) -> Callable[[], EnvBase]:
        config = copy.deepcopy(self.config)
        return lambda: BattleEnv(**config, seed=seed, device=device)

    def supports_continuous_actions(self) -> bool:
        return False

    def supports_discrete_actions(self) -> bool:
        return True

    def has_state(self) -> bool:
        return False

    def has_render(self, env: EnvBase) -> bool:
        return False

    def max_steps(self, env: EnvBase) -> int:
        return self.config["max_cycles"]

    def group_map(self, env: EnvBase) -> dict[str, list[str]]:
        return env.group_map

    def observation_spec(self, env: EnvBase) -> Composite:
        # the policy's input only; positions, alive masks and blue's entries stay in the
        # environment's spec (hetplug reads them from the batch)
        spec = env.observation_spec
        return Composite(
            {"red": Composite({"observation": spec["red", "observation"].clone()}, shape=spec["red"].shape)}
        )

    def info_spec(self, env: EnvBase) -> Composite | None:
        return None

    def state_spec(self, env: EnvBase) -> Composite | None:
        return None

    def action_mask_spec(self, env: EnvBase) -> Composite | None:
        return None

    def action_spec(self, env: EnvBase) -> Composite:
        return env.full_action_spec

    @staticmethod
    def env_name() -> str:
        return "magent"

    @staticmethod
    def log_info(batch: TensorDictBase) -> dict[str, float]:
        """Per collected batch, over the episodes that ended in it: ``battle/win_rate`` and
        the mean number of red and blue agents alive at the end."""
        done = batch.get(("next", "done")).squeeze(-1)
        if not done.any():
            return {}
        alive = {
            team: batch.get(("next", team, "alive"))[done].squeeze(-1).sum(-1) for team in ("red", "blue")
        }
        return {
            "battle/win_rate": batch.get(("next", "battle_won")).squeeze(-1)[done].float().mean().item(),
            "battle/red_alive": alive["red"].float().mean().item(),
            "battle/blue_alive": alive["blue"].float().mean().item(),
            "battle/episodes": float(done.sum().item()),
        }


class MAgentBattleTask(Task):
    """hetplug's MAgent2 tasks for BenchMARL (``magent/battle``)."""

    BATTLE = None

    @staticmethod
    def associated_class():
        return BattleClass

    def get_from_yaml(self, path: str | None = None) -> TaskClass:
        """The task with its options from ``path`` (default: hetplug's ``battle.yaml``)."""
        return self.get_task(_read_yaml_config(str(path or YAML)))


def win_rate(rollouts: list[TensorDictBase]) -> float:
    """Fraction of evaluation rollouts (BenchMARL's ``on_evaluation_end``) red won: each is
    cut at its first ``done``, as BenchMARL's logger cuts them."""
    won = []
    for r in rollouts:
        done = r.get(("next", "done")).squeeze(-1)
        end = int(done.nonzero()[0, 0]) if done.any() else done.shape[0] - 1
        won.append(bool(r.get(("next", "battle_won"))[end].item()))
    return float(torch.tensor(won, dtype=torch.float).mean()) if won else float("nan")
