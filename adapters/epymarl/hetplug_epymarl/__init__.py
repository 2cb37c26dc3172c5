"""hetplug inside EPyMARL (and PyMARLzoo+): one ``hetplug:`` line in an algorithm config.

    hetplug: [per]                    # or a mapping, see hetplug_epymarl.settings

Run ``hetplug-epymarl --config=qmix --env-config=gymma with ...`` from an EPyMARL checkout,
or put ``import hetplug_epymarl.auto`` first in its ``src/main.py``. Both call
:func:`install`, which wraps EPyMARL's ``run.run_sequential``: a config without the key
runs EPyMARL's own code untouched; with it, for that run only, ``run.ReplayBuffer`` is a
prioritised subclass of the host's buffer and the config's Q-learner is wrapped by
:class:`~hetplug_epymarl.learner.HetplugLearner`.
"""

from __future__ import annotations

import functools
from typing import Any

from hetplug_epymarl.host import Host, load_host
from hetplug_epymarl.settings import Settings, SliceSource, parse_settings

__all__ = ["Host", "Settings", "SliceSource", "install", "last_session", "parse_settings", "uninstall"]

_ACTIVE: dict[str, Any] = {"session": None, "last": None, "host": None}


def last_session():
    """The :class:`~hetplug_epymarl.session.Session` of the latest hetplug run in this
    process (its ``pm``, ``priorities()``, ``metrics``), or None."""
    return _ACTIVE["last"]


def _current_session():
    session = _ACTIVE["session"]
    if session is None:
        raise RuntimeError("hetplug's ReplayBuffer was built outside a hetplug run")
    return session


def _check_learner(settings: Settings, args: Any, host: Host) -> type:
    name = getattr(args, "learner", None)
    cls = host.learners.get(name)
    needs = settings.prioritiser or next((p for p in ("hetdps", "shppo") if p in settings.plugins), None)
    if needs is None:
        return cls
    if cls is None or not (issubclass(cls, host.q_learner) or issubclass(cls, host.ppo_learner)):
        raise ValueError(
            f"hetplug.plugins: {needs!r} needs the Q-learner (learner: q_learner, as in "
            f"iql, vdn, qmix) or the PPO learner (learner: ppo_learner, as in ippo, mappo); "
            f"this config has learner={name!r}"
        )
    if settings.prioritiser is None:
        return cls
    if getattr(args, "prioritized_buffer", False):
        raise ValueError(
            "prioritized_buffer=True: the host's own prioritised buffer and hetplug's "
            f"{settings.prioritiser!r} cannot both be on; set prioritized_buffer: False"
        )
    mixer = getattr(args, "mixer", None)
    if settings.prioritiser == "lbs" and (not issubclass(cls, host.q_learner) or mixer is not None):
        raise ValueError(
            "hetplug.plugins: 'lbs' shares experience between independent Q-learners (iql, iql_ns: "
            f"learner q_learner, no mixer); this config has learner={name!r}, mixer={mixer!r}"
        )
    if mixer not in (None, "vdn", "qmix"):
        raise ValueError(f"hetplug.plugins: mixer={mixer!r} is not supported (None, vdn or qmix)")
    return cls


def _check_mac(settings: Settings, args: Any, host: Host) -> type:
    """The mac class for this run: the host's, or for ``hetdps`` its slot-agent subclass."""
    from hetplug.sharing.plugin import HetDPSConfig
    from hetplug_epymarl.shppo_agent import shppo_mac_class
    from hetplug_epymarl.slot_agent import slot_mac_class

    mac = getattr(args, "mac", None)
    cls = host.macs.get(mac)
    name = next((p for p in ("hetdps", "shppo") if p in settings.plugins), None)
    if name is None:
        return cls
    agent = getattr(args, "agent", None)
    if mac != "basic_mac" or agent != "rnn":
        raise ValueError(
            f"hetplug.plugins: {name!r} replaces the parameter-shared rnn agent (mac: basic_mac, "
            f"agent: rnn); this config has mac={mac!r}, agent={agent!r}"
        )
    if name == "shppo":
        learner = host.learners.get(getattr(args, "learner", None))
        if learner is None or not issubclass(learner, host.ppo_learner):
            raise ValueError(
                "hetplug.plugins: 'shppo' is an actor for the PPO learner (mappo, ippo); this config "
                f"has learner={getattr(args, 'learner', None)!r}"
            )
        return shppo_mac_class(cls, **{"latent_dim": 3, "decoder_hidden": 64, **settings.shppo_agent})
    config = HetDPSConfig(**settings.options.get("hetdps", {}))
    return slot_mac_class(cls, config.n_slots, config.start)


def install(host: str | None = None) -> Host:
    """Wrap the host's ``run_sequential`` (idempotent). Returns the host handles."""
    from hetplug_epymarl.buffer import make_buffer_class
    from hetplug_epymarl.learner import HetplugLearner
    from hetplug_epymarl.session import Session
    from hetplug_epymarl.slot_agent import bind_slots

    h = load_host(host)
    original = h.run.run_sequential
    if getattr(original, "__hetplug_original__", None) is not None:
        _ACTIVE["host"] = h
        return h
    buffer_class = make_buffer_class(h.replay_buffer, _current_session)

    @functools.wraps(original)
    def run_sequential(args, logger, *rest, **kwargs):
        settings = parse_settings(getattr(args, "hetplug", None))
        if settings is None:
            return original(args, logger, *rest, **kwargs)
        learner_cls = _check_learner(settings, args, h)
        mac_cls = _check_mac(settings, args, h)
        session = Session(settings, args, h.name)

        def make_learner(mac, scheme, log, largs):
            session.learner = HetplugLearner(learner_cls(mac, scheme, log, largs), session, h)
            if "hetdps" in settings.plugins:
                bind_slots(session.pm.get_plugin("hetdps"), session.learner.inner)
            if "shppo" in settings.plugins:
                session.pm.get_plugin("shppo").bind(session.learner.inner.mac.agent.latent_net)
            return session.learner

        saved = h.run.ReplayBuffer, h.learners[args.learner], h.macs[args.mac]
        _ACTIVE["session"] = _ACTIVE["last"] = session
        h.run.ReplayBuffer = buffer_class
        h.learners[args.learner] = make_learner
        h.macs[args.mac] = mac_cls
        try:
            return original(args, logger, *rest, **kwargs)
        finally:
            h.run.ReplayBuffer, h.learners[args.learner], h.macs[args.mac] = saved
            _ACTIVE["session"] = None

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
