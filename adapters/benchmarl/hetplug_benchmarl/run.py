"""Hydra runs of BenchMARL with hetplug: BenchMARL's ``run.py`` plus a ``hetplug`` group.

    python -m hetplug_benchmarl.run algorithm=mappo task=vmas/balance hetplug=shep
    python -m hetplug_benchmarl.run algorithm=iql task=vmas/navigation \\
        model=layers/hetplug_slot_mlp hetplug=hetdps hetplug.hetdps.interval=10

The ``hetplug`` group (``none``, ``per``, ``shep``, ``lbs``, ``hetdps``, ``shppo``; yaml under
``hetplug_benchmarl/conf/hetplug``) holds hetplug's one configuration language: ``plugins``,
each plugin's options under its name, ``positions`` / ``opponents`` / ``replay_window``
(docs/configuration.md). Importing this package registers hetplug's model configs
(``model=layers/hetplug_slot_mlp``) and the ``happo`` algorithm.

Mistakes in ``algorithm=``, ``task=``, ``hetplug=`` and the hetplug options are one line
(exit status 2) before any environment is built; so are a plugin without the model it needs,
a logger whose package is missing (BenchMARL's default loggers are csv and wandb) and
``experiment.render=True`` where torchvision does not import.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

import hetplug_benchmarl.tasks  # noqa: F401  (registers task=magent/battle)
from hetplug.config import did_you_mean
from hetplug_benchmarl.callback import HetplugCallback
from hetplug_benchmarl.models import CONF

USAGE = """usage: python -m hetplug_benchmarl.run algorithm=ALG task=FAMILY/TASK [hetplug=GROUP] [KEY=VALUE ...]

BenchMARL's Hydra entry with hetplug. Groups and choices:
  algorithm   {algorithms}
  task        {tasks}
  model       BenchMARL's layers/<name>, plus layers/hetplug_slot_mlp (HetDPS) and layers/hetplug_shppo (SHPPO)
  hetplug     {groups}

hetplug's options are the group's keys (docs/configuration.md), overridable on the command line:
  hetplug.shep.grid_shape=[4,4]   hetplug.hetdps.interval=10   hetplug.positions.slice=[0,2]
  +hetplug.per.is_beta=0.5        (a key the group's yaml does not set takes a leading +)

Example:
  python -m hetplug_benchmarl.run algorithm=iql task=vmas/navigation hetplug=shep

Hydra's own help: --hydra-help."""


def _choices() -> dict[str, list[str]]:
    """The names Hydra accepts for ``algorithm``, ``task`` and ``hetplug``."""
    import benchmarl

    conf = Path(benchmarl.__file__).parent / "conf"
    algorithms = sorted(
        {p.stem for p in (conf / "algorithm").glob("*.yaml")}
        | {p.stem for p in (CONF / "algorithm").glob("*.yaml")}
    )
    tasks = sorted(
        {f"{p.parent.name}/{p.stem}" for root in (conf, CONF) for p in (root / "task").glob("*/*.yaml")}
    )
    groups = sorted(p.stem for p in (CONF / "hetplug").glob("*.yaml"))
    return {"algorithm": algorithms, "task": tasks, "hetplug": groups}


def usage() -> str:
    c = _choices()
    families = sorted({t.split("/")[0] for t in c["task"]})
    return USAGE.format(
        algorithms=", ".join(c["algorithm"]),
        tasks=f"{', '.join(families)} families, e.g. vmas/navigation, vmas/balance ({len(c['task'])} tasks)",
        groups=", ".join(c["hetplug"]),
    )


def check_arguments(argv: list[str]) -> str | None:
    """A one-line error for an unknown ``algorithm=``, ``task=`` or ``hetplug=`` choice, or for
    a hetplug option the chosen group's yaml and the ``hetplug.*`` overrides make invalid
    (before Hydra composes anything)."""
    import yaml

    choices = _choices()
    sweep = any(a in ("-m", "--multirun") for a in argv)
    group, overrides = "none", []
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        if not sep:
            continue
        values = _sweep(value) if sweep else [value]
        if key in choices:
            for one in values:
                if one not in choices[key]:
                    return f"unknown {key} {one!r}{did_you_mean(one, choices[key])}; choose one of: {', '.join(choices[key])}"
            group = values[0] if key == "hetplug" and len(values) == 1 else group
        elif key.startswith("hetplug.") and len(values) == 1:
            overrides.append((key.split(".")[1:], yaml.safe_load(value)))
    config = yaml.safe_load((CONF / "hetplug" / f"{group}.yaml").read_text()) or {}
    for path, value in overrides:
        node = config
        for part in path[:-1]:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node
        if isinstance(node, dict):
            node[path[-1]] = value
    try:
        hetplug_config(config)
    except (ValueError, TypeError) as err:
        return str(err)
    return None


def _sweep(value: str) -> list[str]:
    """A multirun value's choices: ``a,b`` -> ``[a, b]`` (commas inside brackets stay)."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(value):
        depth += ch in "[{("
        depth -= ch in "]})"
        if ch == "," and depth == 0:
            out.append(value[start:i])
            start = i + 1
    return [*out, value[start:]]


#: the Hydra ``model=`` choice a plugin needs for the group's policy
PLUGIN_MODELS = {"hetdps": "layers/hetplug_slot_mlp", "shppo": "layers/hetplug_shppo"}
#: the package each of BenchMARL's loggers imports (csv needs none)
LOGGER_PACKAGES = {"wandb": "wandb", "tensorboard": "tensorboard", "mlflow": "mlflow"}


def check_model(plugins: Any, model: str) -> str | None:
    """A one-line error when a selected plugin needs another ``model=`` than the chosen one."""
    for plugin in plugins:
        needed = PLUGIN_MODELS.get(plugin)
        if needed is not None and model != needed:
            return f"plugin {plugin!r} needs model={needed}, got model={model}"
    return None


def check_loggers(loggers: Any) -> str | None:
    """A one-line error for a logger in ``experiment.loggers`` whose package is not installed
    (BenchMARL's default list holds wandb, which BenchMARL does not install)."""
    import importlib.util

    for name in loggers or ():
        package = LOGGER_PACKAGES.get(str(name))
        if package is not None and importlib.util.find_spec(package) is None:
            others = [str(x) for x in loggers if str(x) != name]
            return (
                f"experiment.loggers includes {name!r}, whose package is not installed: pip install {package}, "
                f"or run with experiment.loggers=[{','.join(others)}]"
            )
    return None


def check_render(render: bool, loggers: Any) -> str | None:
    """A one-line error when BenchMARL would record evaluation videos (``experiment.render``
    with a logger) but torchvision, which writes them, does not import (the torchvision
    BenchMARL pulls in may be built for another torch): found in a subprocess, before training,
    instead of at the first evaluation."""
    if not render or not loggers:
        return None
    out = subprocess.run(
        [sys.executable, "-c", "import torchvision"], capture_output=True, text=True, timeout=300
    )
    if out.returncode == 0:
        return None
    reason = (out.stderr.strip().splitlines() or ["no message"])[-1]
    return (
        f"experiment.render=True records evaluation videos with torchvision, which fails to import here ({reason}); "
        f"run with experiment.render=False, or install the torchvision built for your torch"
    )


def hetplug_config(value: Any):
    """The Hydra group's mapping, parsed by hetplug's one configuration language."""
    import hetplug

    return hetplug.parse_config(value)


def callback_from_config(cfg: dict[str, Any]) -> HetplugCallback:
    """The ``hetplug`` group's values -> a :class:`HetplugCallback` (checked at once)."""
    return HetplugCallback(cfg)


def _fail(message: str) -> None:
    print(f"hetplug_benchmarl.run: error: {message}", file=sys.stderr)
    raise SystemExit(2)


@hydra.main(version_base=None, config_path=str(CONF), config_name="config")
def main(cfg: DictConfig) -> None:
    from benchmarl.algorithms import algorithm_config_registry
    from benchmarl.hydra_config import load_experiment_from_hydra

    from hetplug_benchmarl.wiring import check_algorithm

    choices = HydraConfig.get().runtime.choices
    hetplug_cfg = OmegaConf.to_container(cfg.hetplug, resolve=True)
    try:
        callback = callback_from_config(hetplug_cfg)
        algorithm = algorithm_config_registry[choices.algorithm]
        check_algorithm(callback.config, algorithm.associated_class(), algorithm.on_policy())
    except (ValueError, TypeError) as err:
        _fail(str(err))
    message = (
        check_model(callback.config.plugins, choices.model)
        or check_loggers(cfg.experiment.loggers)
        or check_render(cfg.experiment.render, cfg.experiment.loggers)
    )
    if message is not None:
        _fail(message)
    print(OmegaConf.to_yaml(cfg))
    experiment = load_experiment_from_hydra(cfg, task_name=choices.task, callbacks=[callback])
    experiment.run()


def entry(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(usage())
        return
    message = check_arguments(argv)
    if message is not None:
        _fail(message)
    main()


if __name__ == "__main__":
    entry()
