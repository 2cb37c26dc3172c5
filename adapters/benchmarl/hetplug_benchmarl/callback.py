"""The BenchMARL callback: BenchMARL's events -> hetplug's hooks and the active wirings.

Per iteration BenchMARL calls (FACTS.md, "BenchMARL 1.5.2"):

    collect -> on_batch_collected : per group: batch -> TrajectoryBatch ->
                                    hetplug_trajectories_collected -> wirings.collected
            -> per group: extend, n x {sample -> loss -> step -> priorities}
            -> on_train_end       : hetplug_auxiliary_losses -> wirings.train_end
                                    -> hetplug_after_update -> metrics
    checkpoint -> on_state_dict / on_load_state_dict : plugin states

One plugin manager per agent group: groups have their own buffers, sizes and losses.
What each method needs and installs is in :mod:`hetplug_benchmarl.wiring`.
"""

from __future__ import annotations

from typing import Any

import pluggy
import torch
from benchmarl.experiment import Callback

import hetplug
from hetplug.state import read_versioned, require_keys, state_int, versioned
from hetplug_benchmarl import wiring as wiring_module
from hetplug_benchmarl.batch import to_trajectory_batch
from hetplug_benchmarl.metrics import MetricLog
from hetplug_benchmarl.progress import show_last_return
from hetplug_benchmarl.wiring import GroupRun, Wiring


def host_spec(exp, group: str) -> hetplug.HostSpec:
    """The group's sizes as the replay sees them: a trajectory is one environment's segment
    of an iteration (``T`` = frames per batch / envs), and the storage keeps BenchMARL's
    memory in such rows (on-policy: one rollout's rows). Wirings adjust it."""
    cfg = exp.config
    frames = cfg.collected_frames_per_batch(exp.on_policy)
    envs = cfg.n_envs_per_worker(exp.on_policy)
    if frames % envs:
        raise ValueError(
            f"collected frames per batch ({frames}) must be a multiple of n_envs_per_worker ({envs})"
        )
    rows = max(1, cfg.replay_buffer_memory_size(exp.on_policy) // frames) * envs
    old = exp.replay_buffers[group]
    discrete = not exp.continuous_actions
    total = cfg.get_max_n_frames(exp.on_policy)
    return hetplug.HostSpec(
        n_agents=len(exp.group_map[group]),
        max_steps=frames // envs,
        capacity=rows,
        device=old.storage.device if old.storage.device != "auto" else cfg.buffer_device,
        n_actions=int(exp.action_spec[group, "action"].space.n) if discrete else None,
        total_env_steps=int(total) if total else None,
        extra={
            "framework": "benchmarl",
            "algorithm": type(exp.algorithm).__name__,
            "group": group,
            "gamma": float(cfg.gamma),  # the experiment's discount (SHPPO's latent losses use it)
        },
    )


class HetplugCallback(Callback):
    """Runs hetplug plugins inside a BenchMARL experiment.

    Pass it in ``Experiment(callbacks=[HetplugCallback(...)])``, or call
    :func:`hetplug_benchmarl.wrap` on a built experiment.

    Args:
        config: hetplug's configuration: plugin names (``["shep"]``) or the full mapping
            ``{"plugins": [...], "shep": {...}, "positions": {...}, ...}``
            (:func:`hetplug.parse_config`, docs/configuration.md).
        options: (legacy form) per-plugin options, merged into ``config``.
        **top_level: other top-level keys of the configuration (``positions``,
            ``opponents``, ``replay_window``, or a plugin's options by its name).

    Raises:
        ValueError: at construction for unknown plugins, keys or options; at setup (before
            any training, nothing replaced) for what the experiment cannot wire.
    """

    def __init__(self, config: Any = (), options: dict[str, dict] | None = None, **top_level: Any) -> None:
        super().__init__()
        self.config = hetplug.parse_config(_merge(config, options, top_level))
        self.log = MetricLog()
        self.groups: dict[str, GroupRun] = {}
        self.wirings: list[Wiring] = []

    @property
    def plugins(self) -> list[str]:
        return list(self.config.plugins)

    @property
    def options(self) -> dict[str, dict]:
        return self.config.options

    # BenchMARL pickles callbacks (with .experiment) into config.pkl: keep the recipe only.
    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.experiment = None
        self.log = MetricLog()
        self.groups = {}
        self.wirings = []

    # ------------------------------------------------------------------ setup
    def on_setup(self) -> None:
        exp = self.experiment
        probe = hetplug.get_plugin_manager(self.config.plugins, self.config.options)
        wirings = wiring_module.select(self.config, probe)
        for w in wirings:
            w.check_algorithm(type(exp.algorithm), exp.on_policy)
        specs = {}
        for group in exp.group_map:  # every check first: nothing is replaced if one fails
            for w in wirings:
                w.check(exp, group)
            spec = host_spec(exp, group)
            for w in wirings:
                spec = w.spec(exp, group, spec)
            specs[group] = spec
        for group, spec in specs.items():
            pm = hetplug.get_plugin_manager(self.config.plugins, self.config.options)
            pm.hook.hetplug_configure.call_historic(kwargs={"spec": spec})
            run = GroupRun(group=group, pm=pm, spec=spec)
            for w in wirings:
                w.install(exp, run)
            objects: dict[str, Any] = {}
            for w in wirings:
                objects.update(w.host_objects(exp, group))
            pm.hook.hetplug_bind(host=hetplug.HostObjects(**objects))
            self.groups[group] = run
        self.wirings = wirings

    # ------------------------------------------------------------------ per iteration
    def on_batch_collected(self, batch) -> None:
        discrete = not self.experiment.continuous_actions
        for group, run in self.groups.items():
            run.collected = to_trajectory_batch(batch, group, discrete, run.positions, run.opponents)
            run.results = [r for r in run.pm.hook.hetplug_trajectories_collected(batch=run.collected) if r]
            run.auxiliary_batch = None
            run.copies = []
            run.values = {k: v for r in run.results for k, v in r.metrics.items()}
            for w in self.wirings:
                w.collected(self.experiment, batch, run)
        show_last_return(self.experiment)

    def on_train_end(self, training_td, group: str) -> None:
        run = self.groups.get(group)
        if run is None:
            return
        run.updates += 1
        values = dict(run.values)
        if run.pm.hook.hetplug_auxiliary_losses.get_hookimpls():
            batch = run.auxiliary_batch if run.auxiliary_batch is not None else run.collected
            for out in run.pm.hook.hetplug_auxiliary_losses(batch=batch, update=run.updates):
                values.update(out or {})
        for w in self.wirings:
            w.train_end(self.experiment, run)
        for out in run.pm.hook.hetplug_after_update(update=run.updates):
            values.update(out or {})
        self.log.record(self.experiment, group, run.updates, values)

    # ------------------------------------------------------------------ inspection
    def plugin_manager(self, group: str) -> pluggy.PluginManager:
        """The plugin manager serving ``group`` (one per agent group)."""
        return self.groups[group].pm

    def metrics(self, group: str) -> dict[str, float]:
        """The scalars logged for ``group`` at its latest training iteration."""
        rows = self.log.rows.get(group)
        return dict(rows[-1][1]) if rows else {}

    @property
    def history(self) -> dict[str, list[float]]:
        """Every logged value, in order: ``{name: [value per iteration]}``."""
        return self.log.history

    def priorities(self, group: str) -> torch.Tensor:
        """``[stored]`` trajectory priorities the group's prioritiser reported at its latest
        training iteration (``<name>/priorities``)."""
        latest = self.log.latest.get(group, {})
        found = [v for k, v in latest.items() if k.endswith("/priorities")]
        if not found:
            raise ValueError(
                f"no priorities reported for group {group!r} yet: select a prioritiser (per, shep) "
                "and train at least one iteration"
            )
        return found[0]

    # ------------------------------------------------------------------ checkpoints
    def on_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict["hetplug"] = versioned(
            {
                group: {"plugins": hetplug.plugin_state(r.pm), "updates": r.updates}
                for group, r in self.groups.items()
            }
        )

    def on_load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("hetplug")
        if saved is None:
            raise ValueError(
                "the checkpoint has no 'hetplug' entry: it was saved without the hetplug callback"
            )
        saved = read_versioned(saved, "the checkpoint's hetplug")
        if sorted(saved) != sorted(self.groups):
            raise ValueError(
                f"checkpoint groups {sorted(saved)} differ from the experiment's {sorted(self.groups)}"
            )
        for group, state in saved.items():  # every group checked before any is loaded
            where = f"the checkpoint's hetplug[{group!r}]"
            require_keys(where, state, ("plugins", "updates"))
            state_int(where, state, "updates", 0)
            hetplug.check_plugin_state(self.groups[group].pm, state["plugins"])
        for group, state in saved.items():
            hetplug.load_plugin_state(self.groups[group].pm, state["plugins"])
            self.groups[group].updates = int(state["updates"])


def _merge(config: Any, options: dict | None, top_level: dict[str, Any]) -> Any:
    """``HetplugCallback(["shep"], {"shep": {...}}, positions=...)`` -> the full mapping."""
    if not options and not top_level:
        return config
    if isinstance(config, hetplug.HetplugConfig):
        config = config.as_dict()
    if isinstance(config, str):
        config = [config]
    full = dict(config) if isinstance(config, dict) else {"plugins": list(config or [])}
    for key, value in {**(options or {}), **top_level}.items():
        if value is not None:
            full[key] = value
    return full
