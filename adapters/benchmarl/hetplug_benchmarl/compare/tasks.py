"""Task names of ``hetplug compare``: ``family/task`` -> a BenchMARL task config.

A family maps its task names to loaders; adding one (e.g. MAgent2's battle task) is one
entry in :data:`FAMILIES`. Loaders run where the experiment is built (a Ray worker), so a
family's heavy imports stay inside its function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _vmas() -> dict[str, Callable[[], Any]]:
    from benchmarl.environments import VmasTask

    return {task.name.lower(): task.get_from_yaml for task in VmasTask}


def _magent() -> dict[str, Callable[[], Any]]:
    """hetplug's MAgent2 battle (SHEP's own setting); BenchMARL's adversarial_pursuit is left
    out (its two teams are two learning groups)."""
    from hetplug_benchmarl.tasks import MAgentBattleTask

    return {"battle": MAgentBattleTask.BATTLE.get_from_yaml}


#: family name -> ``() -> {task name: () -> BenchMARL TaskClass}``
FAMILIES: dict[str, Callable[[], dict[str, Callable[[], Any]]]] = {"vmas": _vmas, "magent": _magent}
#: families whose observations are not flat vectors: the trailing dims BenchMARL's MLP flattens
#: (its ``num_feature_dims``); MAgent2 agents see ``[13, 13, 5]`` views
FEATURE_DIMS: dict[str, int] = {"magent": 3}


def feature_dims(name: str) -> int:
    """How many trailing observation dims of ``family/task`` are features (1: a flat vector)."""
    return FEATURE_DIMS.get(name.partition("/")[0], 1)


def task_names() -> list[str]:
    """Every accepted ``family/task`` name, sorted."""
    return sorted(f"{family}/{task}" for family, tasks in FAMILIES.items() for task in tasks())


def load_task(name: str) -> Any:
    """The BenchMARL task config (``TaskClass``) for ``family/task``, e.g. ``vmas/navigation``.

    Raises:
        KeyError: the name is not in :func:`task_names`.
    """
    family, _, task = name.partition("/")
    tasks = FAMILIES[family]() if family in FAMILIES else {}
    if task not in tasks:
        raise KeyError(name)
    return tasks[task]()
