"""hetplug inside EPyMARL (and PyMARLzoo+): one ``hetplug:`` key in an algorithm config.

    hetplug: [per]                    # or the full form of hetplug.config (docs/epymarl.md)

Run ``hetplug-epymarl --config=qmix --env-config=gymma with ...`` from an EPyMARL checkout,
or put ``import hetplug_epymarl.auto`` first in its ``src/main.py``. Both call
:func:`install`, which wraps EPyMARL's ``run.run_sequential``: a config without the key
runs EPyMARL's own code untouched; with it, a session dispatches EPyMARL's events to the
wiring of the selected plugins.

Modules: ``install`` (the wrapper), ``checks`` (the key, read before anything is built),
``session`` (dispatch), ``wiring/`` (one module per method: per, shep, lbs, hetdps,
shppo), ``happo`` (the ``hetplug_happo`` learner), ``transfer`` (zero-shot team size),
``buffer`` and ``learner`` (the host's buffer and learner with the session behind them),
``episodes`` (EpisodeBatch -> plain tensors), ``env_fields`` (what the environment object
reports: extractor positions, alive masks, success), ``updates`` (the weighted Q and PPO
updates), ``metrics`` (logging), ``checkpoint`` (hetplug.th), ``host`` (EPyMARL vs
PyMARLzoo+), ``cli`` and ``auto`` (the two entries).
"""

from __future__ import annotations

from hetplug_epymarl.checks import read_config
from hetplug_epymarl.host import Host, load_host
from hetplug_epymarl.install import install, last_session, last_transfer, uninstall

__all__ = ["Host", "install", "last_session", "last_transfer", "load_host", "read_config", "uninstall"]
