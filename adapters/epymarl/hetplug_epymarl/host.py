"""The two hosts: an EPyMARL checkout (``src/`` on ``sys.path``, top-level modules ``run``,
``learners``, ``components``) and PyMARLzoo+ (the ``pymarlzooplus`` package on PyPI, the
same tree under a package name). Their differences (FACTS.md) are absorbed here and in
the buffer: PyMARLzoo+'s ``ReplayBuffer`` takes ``args`` third, EPyMARL's does not."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from types import ModuleType

HOSTS = ("epymarl", "pymarlzooplus")


@dataclass(frozen=True)
class Host:
    """Handles on one host's modules (nothing of it is copied: these are its objects)."""

    name: str
    run: ModuleType = field(repr=False)  # has run_sequential and the module global ReplayBuffer
    learners: dict = field(repr=False)  # the learner registry
    replay_buffer: type = field(repr=False)  # the host's ReplayBuffer class
    q_learner: type = field(repr=False)  # the host's QLearner class (IQL, VDN, QMIX)
    ppo_learner: type = field(repr=False)  # the host's PPOLearner class (IPPO, MAPPO)
    macs: dict = field(repr=False)  # the controller (mac) registry


def _epymarl_importable() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("run", "learners", "components"))


def load_host(name: str | None = None) -> Host:
    """Import a host's modules. ``name=None`` picks EPyMARL when its ``src/`` is on
    ``sys.path``, else PyMARLzoo+.

    Raises:
        ValueError: unknown name, or the host is not importable.
    """
    if name is not None and name not in HOSTS:
        raise ValueError(f"host must be one of {', '.join(HOSTS)}, got host={name!r}")
    if name is None:
        if _epymarl_importable():
            name = "epymarl"
        elif importlib.util.find_spec("pymarlzooplus") is not None:
            name = "pymarlzooplus"
        else:
            raise ValueError(
                "no host found: put EPyMARL's src/ on sys.path (hetplug-epymarl does this) "
                "or install pymarlzooplus"
            )
    prefix = "" if name == "epymarl" else "pymarlzooplus."
    try:
        run = importlib.import_module(prefix + "run")
        learners = importlib.import_module(prefix + "learners")
        buffers = importlib.import_module(prefix + "components.episode_buffer")
        q_module = importlib.import_module(prefix + "learners.q_learner")
        ppo_module = importlib.import_module(prefix + "learners.ppo_learner")
        controllers = importlib.import_module(prefix + "controllers")
    except ImportError as err:
        raise ValueError(f"host {name!r} is not importable: {err}") from err
    if not hasattr(run, "run_sequential") or not hasattr(learners, "REGISTRY"):
        raise ValueError(f"host {name!r}: module {run.__name__} is not EPyMARL's run module ({run.__file__})")
    return Host(
        name,
        run,
        learners.REGISTRY,
        buffers.ReplayBuffer,
        q_module.QLearner,
        ppo_module.PPOLearner,
        controllers.REGISTRY,
    )
