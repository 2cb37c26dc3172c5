"""Hydra runs of BenchMARL with hetplug: BenchMARL's ``run.py`` plus a ``hetplug`` group.

    python -m hetplug_benchmarl.run algorithm=mappo task=vmas/balance hetplug=shep
    python -m hetplug_benchmarl.run algorithm=iql task=vmas/navigation \\
        model=layers/hetplug_slot_mlp hetplug=hetdps hetplug.hetdps.interval=10

The ``hetplug`` group (``none``, ``per``, ``shep``, ``lbs``, ``hetdps``, ``shppo``; yaml under
``hetplug_benchmarl/conf/hetplug``) holds hetplug's one configuration language: ``plugins``,
each plugin's options under its name, ``positions`` / ``opponents`` / ``replay_window``
(docs/configuration.md). Importing this package registers hetplug's model configs
(``model=layers/hetplug_slot_mlp``).
"""

from __future__ import annotations

from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

import hetplug_benchmarl.tasks  # noqa: F401  (registers task=magent/battle)
from hetplug_benchmarl.callback import HetplugCallback
from hetplug_benchmarl.models import CONF


def callback_from_config(cfg: dict[str, Any]) -> HetplugCallback:
    """The ``hetplug`` group's values -> a :class:`HetplugCallback` (checked at once)."""
    return HetplugCallback(cfg)


@hydra.main(version_base=None, config_path=str(CONF), config_name="config")
def main(cfg: DictConfig) -> None:
    from benchmarl.hydra_config import load_experiment_from_hydra

    choices = HydraConfig.get().runtime.choices
    print(OmegaConf.to_yaml(cfg))
    callback = callback_from_config(OmegaConf.to_container(cfg.hetplug, resolve=True))
    experiment = load_experiment_from_hydra(cfg, task_name=choices.task, callbacks=[callback])
    experiment.run()


if __name__ == "__main__":
    main()
