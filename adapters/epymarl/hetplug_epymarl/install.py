"""install(): EPyMARL's ``run.run_sequential``, with a hetplug session for runs that have
the key.

A config without ``hetplug`` (or selecting no plugin) runs EPyMARL's own code untouched.
With it, the key is read (:func:`~hetplug_epymarl.checks.read_config`), a
:class:`~hetplug_epymarl.session.Session` selects the wiring and checks it against the
run's args, and for that run only: ``run.ReplayBuffer`` is hetplug's subclass of the
host's buffer, the config's learner entry builds the host's learner wrapped by
:class:`~hetplug_epymarl.learner.HetplugLearner`, the config's mac entry is the wiring's
(HetDPS, SHPPO), and, when plugins read the collected episodes, the runner and env entries
record what the environment knows (:mod:`~hetplug_epymarl.env_fields`). Everything is put
back when the run ends.

``install`` also registers hetplug's learners in the host's learner registry
(``hetplug_happo``), for runs with or without the key, and with ``transfer=True`` (the
launcher's ``--transfer``) makes later runs evaluate a saved agent at another team size
(:mod:`hetplug_epymarl.transfer`).
"""

from __future__ import annotations

import functools
from typing import Any

from hetplug_epymarl import happo
from hetplug_epymarl.buffer import make_buffer_class
from hetplug_epymarl.checks import read_config
from hetplug_epymarl.env_fields import recording_runner_class
from hetplug_epymarl.host import Host, load_host
from hetplug_epymarl.session import Session
from hetplug_epymarl.transfer import AgentsOnly
from hetplug_epymarl.transfer import check_args as check_transfer

_ACTIVE: dict[str, Any] = {
    "session": None,
    "last": None,
    "host": None,
    "transfer": False,
    "last_transfer": None,
}


def last_session() -> Session | None:
    """The session of the latest hetplug run in this process (its ``pm``, ``metrics``,
    ``priorities()``, ``plans``), or None."""
    return _ACTIVE["last"]


def last_transfer() -> AgentsOnly | None:
    """The learner of the latest ``--transfer`` evaluation in this process (its ``mac`` and
    ``loaded_from``), or None."""
    return _ACTIVE["last_transfer"]


def _current_session() -> Session:
    session = _ACTIVE["session"]
    if session is None:
        raise RuntimeError("hetplug's ReplayBuffer was built outside a hetplug run")
    return session


def install(host: str | None = None, transfer: bool = False) -> Host:
    """Wrap the host's ``run_sequential`` (idempotent) and register hetplug's learners in
    its registry (``hetplug_happo``, :mod:`hetplug_epymarl.happo`). Returns the host handles.

    Args:
        host: ``"epymarl"``, ``"pymarlzooplus"``, or None (the one importable).
        transfer: later runs evaluate a saved agent at another team size without training
            (:mod:`hetplug_epymarl.transfer`): the learner loads the agents only.
    """
    h = load_host(host)
    h.learners.setdefault(happo.NAME, happo.happo_learner_class(h.ppo_learner))
    _ACTIVE["transfer"] = bool(transfer)
    original = h.run.run_sequential
    if getattr(original, "__hetplug_original__", None) is not None:
        _ACTIVE["host"] = h
        return h
    buffer_class = make_buffer_class(h.replay_buffer, _current_session)

    @functools.wraps(original)
    def run_sequential(args, logger, *rest, **kwargs):
        config = read_config(getattr(args, "hetplug", None))
        moving = _ACTIVE["transfer"]
        if config is None and not moving:
            return original(args, logger, *rest, **kwargs)
        if moving:
            check_transfer(args)
        session = None if config is None else Session(config, args, h)
        if session is not None:
            session.check()
        learner_cls = h.learners[args.learner]

        def make_learner(mac, scheme, log, largs):
            learner = learner_cls(mac, scheme, log, largs)
            if session is not None:
                learner = session.learner_built(learner)
            if moving:
                learner = _ACTIVE["last_transfer"] = AgentsOnly(learner)
            return learner

        saved = h.run.ReplayBuffer, h.learners[args.learner], h.macs[args.mac], h.runners[args.runner]
        env_entry = h.envs.get(args.env)
        if session is not None:
            _ACTIVE["session"] = _ACTIVE["last"] = session
            h.run.ReplayBuffer = buffer_class
            h.macs[args.mac] = session.mac_class(h.macs[args.mac])
            recorder = session.recorder
            if recorder is not None:  # what the plugins read of the environment (env_fields)
                h.runners[args.runner] = recording_runner_class(
                    h.runners[args.runner], recorder, recorder.wrap
                )
                if env_entry is not None:  # SMAC's entries appear only inside the runner: wrapped there
                    h.envs[args.env] = recorder.factory(env_entry)
        h.learners[args.learner] = make_learner
        try:
            result = original(args, logger, *rest, **kwargs)
        finally:
            h.run.ReplayBuffer, h.learners[args.learner], h.macs[args.mac], h.runners[args.runner] = saved
            if env_entry is not None:
                h.envs[args.env] = env_entry
            _ACTIVE["session"] = None
        if session is not None:
            h.prepare_plots(args, session.log.logged)
        return result

    run_sequential.__hetplug_original__ = original
    h.run.run_sequential = run_sequential
    _ACTIVE["host"] = h
    return h


def uninstall() -> None:
    """Put the host's own ``run_sequential`` back (hetplug's learners stay registered)."""
    h = _ACTIVE["host"]
    if h is not None:
        original = getattr(h.run.run_sequential, "__hetplug_original__", None)
        if original is not None:
            h.run.run_sequential = original
    _ACTIVE["host"] = None
    _ACTIVE["transfer"] = False
