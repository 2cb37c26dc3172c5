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
"""

from __future__ import annotations

import functools
from typing import Any

from hetplug_epymarl.buffer import make_buffer_class
from hetplug_epymarl.checks import read_config
from hetplug_epymarl.env_fields import recording_runner_class
from hetplug_epymarl.host import Host, load_host
from hetplug_epymarl.session import Session

_ACTIVE: dict[str, Any] = {"session": None, "last": None, "host": None}


def last_session() -> Session | None:
    """The session of the latest hetplug run in this process (its ``pm``, ``metrics``,
    ``priorities()``, ``plans``), or None."""
    return _ACTIVE["last"]


def _current_session() -> Session:
    session = _ACTIVE["session"]
    if session is None:
        raise RuntimeError("hetplug's ReplayBuffer was built outside a hetplug run")
    return session


def install(host: str | None = None) -> Host:
    """Wrap the host's ``run_sequential`` (idempotent). Returns the host handles."""
    h = load_host(host)
    original = h.run.run_sequential
    if getattr(original, "__hetplug_original__", None) is not None:
        _ACTIVE["host"] = h
        return h
    buffer_class = make_buffer_class(h.replay_buffer, _current_session)

    @functools.wraps(original)
    def run_sequential(args, logger, *rest, **kwargs):
        config = read_config(getattr(args, "hetplug", None))
        if config is None:
            return original(args, logger, *rest, **kwargs)
        session = Session(config, args, h)
        session.check()
        learner_cls = h.learners[args.learner]

        def make_learner(mac, scheme, log, largs):
            return session.learner_built(learner_cls(mac, scheme, log, largs))

        saved = h.run.ReplayBuffer, h.learners[args.learner], h.macs[args.mac], h.runners[args.runner]
        env_entry = h.envs.get(args.env)
        _ACTIVE["session"] = _ACTIVE["last"] = session
        h.run.ReplayBuffer = buffer_class
        h.learners[args.learner] = make_learner
        h.macs[args.mac] = session.mac_class(h.macs[args.mac])
        recorder = session.recorder
        if recorder is not None:  # what the plugins read of the environment (env_fields)
            h.runners[args.runner] = recording_runner_class(h.runners[args.runner], recorder, recorder.wrap)
            if env_entry is not None:  # SMAC's entries appear only inside the runner: wrapped there
                h.envs[args.env] = recorder.factory(env_entry)
        try:
            result = original(args, logger, *rest, **kwargs)
        finally:
            h.run.ReplayBuffer, h.learners[args.learner], h.macs[args.mac], h.runners[args.runner] = saved
            if env_entry is not None:
                h.envs[args.env] = env_entry
            _ACTIVE["session"] = None
        h.prepare_plots(args, session.log.logged)
        return result

    run_sequential.__hetplug_original__ = original
    h.run.run_sequential = run_sequential
    _ACTIVE["host"] = h
    return h


def uninstall() -> None:
    """Put the host's own ``run_sequential`` back."""
    h = _ACTIVE["host"]
    if h is not None:
        original = getattr(h.run.run_sequential, "__hetplug_original__", None)
        if original is not None:
            h.run.run_sequential = original
    _ACTIVE["host"] = None
