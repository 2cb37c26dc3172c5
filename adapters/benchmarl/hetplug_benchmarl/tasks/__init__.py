"""BenchMARL tasks that hetplug adds: ``magent/battle`` (MAgent2), SHEP's own setting.

Importing this package registers each task in BenchMARL's ``task_config_registry`` (so
Hydra takes ``task=magent/battle``); magent2 itself is imported only when an environment
is built (``pip install -e '.[magent]'``).
"""

from __future__ import annotations

from benchmarl.environments import task_config_registry

from hetplug_benchmarl.tasks.magent import BattleClass, BattleConfig, MAgentBattleTask, win_rate

__all__ = ["BattleClass", "BattleConfig", "MAgentBattleTask", "win_rate"]

task_config_registry.setdefault("magent/battle", MAgentBattleTask.BATTLE)
