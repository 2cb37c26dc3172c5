"""The two hosts: an EPyMARL checkout (``src/`` on ``sys.path``, top-level modules ``run``,
``learners``, ``components``) and PyMARLzoo+ (the ``pymarlzooplus`` package on PyPI, the
same tree under a package name). Their differences (FACTS.md) are absorbed here:

* PyMARLzoo+'s ``ReplayBuffer`` takes ``args`` third: hetplug's buffer subclass passes the
  host's constructor arguments through unchanged;
* PyMARLzoo+'s ``BasicMAC.init_hidden`` accepts only its own agent names: the macs of the
  agents hetplug builds (HetDPS, SHPPO) initialise their hidden states themselves;
* PyMARLzoo+ plots every logged stat after a run into ``plots/<name>.png``
  (``pymarlzooplus/run.py``): :meth:`Host.prepare_plots` creates the folders that
  hetplug's metric names (``hetplug/<method>/<name>``) need there.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

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
    runners: dict = field(repr=False)  # the runner registry
    envs: dict = field(repr=False)  # the environment registry

    def learner_kind(self, args: Any) -> str | None:
        """``"q"`` (the host's QLearner or a subclass), ``"happo"`` (hetplug's HAPPO learner,
        :mod:`hetplug_epymarl.happo`), ``"ppo"`` (the host's PPOLearner or another
        subclass), or None."""
        cls = self.learners.get(getattr(args, "learner", None))
        if isinstance(cls, type) and issubclass(cls, self.q_learner):
            return "q"
        if isinstance(cls, type) and getattr(cls, "hetplug_happo", False):
            return "happo"
        if isinstance(cls, type) and issubclass(cls, self.ppo_learner):
            return "ppo"
        return None

    def require_q_or_ppo_learner(self, plugin: str, args: Any) -> None:
        kind = self.learner_kind(args)
        if kind == "happo":
            raise ValueError(
                f"hetplug.plugins: {plugin!r} is not wired for hetplug's HAPPO learner "
                f"(learner={getattr(args, 'learner', None)!r}); use the PPO learner (learner: "
                "ppo_learner, as in ippo, mappo)"
            )
        if kind is None:
            raise ValueError(
                f"hetplug.plugins: {plugin!r} needs the Q-learner (learner: q_learner, as in "
                f"iql, vdn, qmix) or the PPO learner (learner: ppo_learner, as in ippo, mappo); "
                f"this config has learner={getattr(args, 'learner', None)!r}"
            )

    def require_rnn_agent(self, plugin: str, args: Any) -> None:
        """``plugin`` replaces the parameter-shared rnn agent: refuse any other."""
        mac, agent = getattr(args, "mac", None), getattr(args, "agent", None)
        if mac != "basic_mac" or agent != "rnn":
            raise ValueError(
                f"hetplug.plugins: {plugin!r} replaces the parameter-shared rnn agent (mac: basic_mac, "
                f"agent: rnn); this config has mac={mac!r}, agent={agent!r}"
            )

    def prepare_plots(self, args: Any, names: Iterable[str]) -> None:
        """PyMARLzoo+ only: create ``plots/<folder>`` for each logged ``names`` with a "/"."""
        results = getattr(args, "results_path", None)
        if self.name != "pymarlzooplus" or not results:
            return
        for folder in {os.path.dirname(name) for name in names} - {""}:
            os.makedirs(os.path.join(results, "plots", folder), exist_ok=True)


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
        runners = importlib.import_module(prefix + "runners")
        envs = importlib.import_module(prefix + "envs")
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
        runners.REGISTRY,
        envs.REGISTRY,
    )
