"""How each method is wired into a BenchMARL experiment: one module per method.

The callback (:mod:`hetplug_benchmarl.callback`) owns nothing method-specific: it builds
one plugin manager per agent group and passes BenchMARL's events to the wirings that are
active, in this order:

    check (every group, before anything changes) -> spec -> [configure] -> host objects
    -> [bind] -> install  ...  per iteration: collected -> train_end

Which wirings are active depends on what the selected plugins implement and on what the
experiment holds, never on a plugin's attributes, so a third-party plugin gets the same
wiring as a built-in one:

* :mod:`.per`: a prioritiser (a plugin answering ``hetplug_replay_add``) gets hetplug's
  trajectory buffer and an importance-weighted loss;
* :mod:`.lbs`: a prioritiser whose ``hetplug_replay_sample`` takes ``td_fn`` (experience
  sharing) gets the LBS buffer instead;
* :mod:`.shep`: positions in the batch, intrinsic rewards into BenchMARL's reward, and
  relabelled trajectories (Group-HER) stored as transitions;
* :mod:`.hetdps`: a slot-model policy's parameters, optimiser state and target copies;
* :mod:`.shppo`: the SHPPO model's LatentNet and the batch its latent losses train on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pluggy

import hetplug


@dataclass
class GroupRun:
    """What the callback keeps for one agent group between BenchMARL's events."""

    group: str
    pm: pluggy.PluginManager
    spec: hetplug.HostSpec
    updates: int = 0
    #: the iteration's collected batch, as hetplug sees it (after intrinsic rewards)
    collected: hetplug.TrajectoryBatch | None = None
    #: every plugin's ``CollectedResult`` for it
    results: list[hetplug.CollectedResult] = field(default_factory=list)
    #: what ``hetplug_auxiliary_losses`` trains on (default: ``collected``)
    auxiliary_batch: hetplug.TrajectoryBatch | None = None
    #: plugin values of the iteration, for the metric log
    values: dict[str, Any] = field(default_factory=dict)
    #: where positions (and opponents' positions) are read, if anywhere (set by SHEP's wiring)
    positions: hetplug.PositionSource | None = None
    opponents: hetplug.PositionSource | None = None
    #: relabelled trajectories of the iteration, with their BenchMARL transitions
    copies: list[tuple[hetplug.TrajectoryBatch, Any]] = field(default_factory=list)
    #: whether a replay wiring stores relabelled trajectories (else they are not built)
    stores_copies: bool = False


class Wiring:
    """One method's wiring; every event is optional."""

    def check_algorithm(self, algorithm: type, on_policy: bool) -> None:
        """Raise ``ValueError`` if the method cannot serve this BenchMARL algorithm class
        (checked before any experiment is built, e.g. by ``hetplug compare``)."""

    def check(self, exp, group: str) -> None:
        """Raise ``ValueError`` (naming the fix) if this group cannot be wired. Runs for
        every group before anything is replaced."""

    def spec(self, exp, group: str, spec: hetplug.HostSpec) -> hetplug.HostSpec:
        """Adjust the group's :class:`~hetplug.HostSpec` (storage sizes) before configure."""
        return spec

    def host_objects(self, exp, group: str) -> dict[str, Any]:
        """Fields of :class:`~hetplug.HostObjects` this wiring hands every plugin."""
        return {}

    def install(self, exp, run: GroupRun) -> None:
        """Replace or attach what the method needs (buffers, losses) once plugins are bound."""

    def collected(self, exp, batch, run: GroupRun) -> None:
        """After ``hetplug_trajectories_collected`` (results in ``run.results``), before
        BenchMARL stores the batch."""

    def train_end(self, exp, run: GroupRun) -> None:
        """After the group's optimiser steps and hetplug's auxiliary losses."""


def prioritiser(pm: pluggy.PluginManager) -> tuple[str | None, bool]:
    """``(name, shares_experience)`` of the plugin that answers ``hetplug_replay_add``;
    sharing prioritisers (LBS) take ``td_fn`` in ``hetplug_replay_sample``."""
    adds = pm.hook.hetplug_replay_add.get_hookimpls()
    if not adds:
        return None, False
    name = adds[0].plugin_name
    sample = [h for h in pm.hook.hetplug_replay_sample.get_hookimpls() if h.plugin_name == name]
    return name, bool(sample) and "td_fn" in sample[0].argnames


def select(config: hetplug.HetplugConfig, pm: pluggy.PluginManager) -> list[Wiring]:
    """The wirings active for ``config`` (order matters: see each event)."""
    from hetplug_benchmarl.wiring.hetdps import HetDPSWiring
    from hetplug_benchmarl.wiring.lbs import LBSWiring
    from hetplug_benchmarl.wiring.per import PrioritisedReplayWiring
    from hetplug_benchmarl.wiring.shep import SHEPWiring
    from hetplug_benchmarl.wiring.shppo import SHPPOWiring

    name, sharing = prioritiser(pm)
    wirings: list[Wiring] = [SHEPWiring(config, pm)]  # positions, rewards and copies first
    if name is not None:
        wirings.append(LBSWiring(name) if sharing else PrioritisedReplayWiring(name, config))
    wirings.append(HetDPSWiring(config))
    wirings.append(SHPPOWiring(config))
    return wirings


def check_algorithm(config, algorithm: type, on_policy: bool) -> None:
    """Refuse, before anything is built, a selection the BenchMARL algorithm class
    ``algorithm`` cannot run (``ValueError`` naming the plugin and the algorithm)."""
    config = hetplug.parse_config(config)
    pm = hetplug.get_plugin_manager(config.plugins, config.options)
    for w in select(config, pm):
        w.check_algorithm(algorithm, on_policy)
