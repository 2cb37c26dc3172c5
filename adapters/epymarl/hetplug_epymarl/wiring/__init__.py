"""Which wiring a run gets, chosen from what the selected plugins implement.

Each module here wires one method into EPyMARL and says what it needs from the host and
what it installs. The session (:mod:`hetplug_epymarl.session`) dispatches EPyMARL's events
to the roles below; each role is held by at most one wiring object, or by none.

* ``replay``: a plugin implements ``hetplug_replay_add`` (the prioritiser: per, shep, or a
  third-party one): :class:`~.per.PrioritisedReplay`; when its ``hetplug_replay_sample``
  also takes ``td_fn`` (an experience-sharing prioritiser: lbs), :class:`~.lbs.SharedReplay`.
* ``collection``: a plugin implements ``hetplug_trajectories_collected`` (shep, hetdps, ...):
  :class:`~.shep.Collection`.
* ``auxiliary``: a plugin implements ``hetplug_auxiliary_losses`` (shppo, ...):
  :class:`~.shppo.AuxiliaryLosses`.
* ``agent``: ``hetdps`` is selected: :class:`~.hetdps.HetDPSWiring` (hetplug's slot agent);
  ``shppo`` is selected: :class:`~.shppo.SHPPOWiring` (hetplug's SHPPO actor).

Only the agent role goes by name: those two built-ins act on a model the adapter builds
for them (a third-party plugin receives the host's objects through ``hetplug_bind``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import hetplug
from hetplug_epymarl.wiring.hetdps import HetDPSWiring
from hetplug_epymarl.wiring.lbs import SharedReplay
from hetplug_epymarl.wiring.per import PrioritisedReplay
from hetplug_epymarl.wiring.shep import Collection
from hetplug_epymarl.wiring.shppo import AuxiliaryLosses, SHPPOWiring

#: built-in plugins that need a model the adapter builds (at most one per run)
AGENTS = {"hetdps": HetDPSWiring, "shppo": SHPPOWiring}


@dataclass(frozen=True)
class Wiring:
    """The active wiring objects of one run, by role (None: the host's own behaviour)."""

    replay: PrioritisedReplay | None = None
    collection: Collection | None = None
    auxiliary: AuxiliaryLosses | None = None
    agent: HetDPSWiring | SHPPOWiring | None = None


def _implementers(pm, hook: str) -> list[Any]:
    return getattr(pm.hook, hook).get_hookimpls()


def select(pm, config: hetplug.HetplugConfig, seed: int, metrics) -> Wiring:
    """The wiring for the plugins registered in ``pm`` (selected by ``config``)."""
    replay = None
    prioritiser = _implementers(pm, "hetplug_replay_add")  # one at most (get_plugin_manager)
    if prioritiser:
        shares = any("td_fn" in impl.argnames for impl in _implementers(pm, "hetplug_replay_sample"))
        replay = (SharedReplay if shares else PrioritisedReplay)(pm, prioritiser[0].plugin_name, seed)
    collects = _implementers(pm, "hetplug_trajectories_collected")
    auxiliary = _implementers(pm, "hetplug_auxiliary_losses")
    agents = [name for name in config.plugins if name in AGENTS]
    return Wiring(
        replay=replay,
        collection=Collection(pm, config, metrics) if collects else None,
        auxiliary=AuxiliaryLosses(pm, metrics) if auxiliary else None,
        agent=AGENTS[agents[0]](config.options.get(agents[0], {})) if agents else None,
    )
