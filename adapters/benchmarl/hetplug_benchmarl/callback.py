"""The BenchMARL callback that runs hetplug's hooks inside an ``Experiment``.

Per iteration BenchMARL calls (FACTS.md, "BenchMARL 1.5.2"):

    collect -> on_batch_collected  : batch -> TrajectoryBatch -> trajectories_collected
                                     (intrinsic reward added in place), replay_add
            -> per group: extend (the TrajectorySampler maps slots to storage indices)
               n x {sample (hetplug priorities, IS weights as "priority_weight")
                    -> loss -> step -> update_tensordict_priority (TD -> priorities)}
            -> on_train_end        : after_update, metrics to the experiment's loggers
    checkpoint -> on_state_dict / on_load_state_dict : plugin state

One plugin manager per agent group: groups have their own buffers, sizes and losses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pluggy
import torch
from benchmarl.experiment import Callback
from torchrl.data import LazyTensorStorage
from torchrl.objectives import ClipPPOLoss, DDPGLoss, DiscreteSACLoss, DQNLoss, SACLoss
from torchrl.objectives.multiagent.qmixer import QMixerLoss

import hetplug
from hetplug.plugins import BUILTIN_PLUGINS
from hetplug.sharing import SharingPlan
from hetplug_benchmarl.batch import check_position_source, to_trajectory_batch
from hetplug_benchmarl.lbs import LBSReplayBuffer
from hetplug_benchmarl.models import shppo_model
from hetplug_benchmarl.options import AdapterOptions
from hetplug_benchmarl.replay import (
    HetplugReplayBuffer,
    TrajectorySampler,
    WeightedClipPPOLoss,
    WeightedQMixerLoss,
)
from hetplug_benchmarl.slots import bind_group, check_group

PRIORITISERS = ("per", "shep")
#: independent off-policy algorithms LBS serves (BenchMARL class names)
LBS_ALGORITHMS = ("Iql", "Isac", "Iddpg")
#: (plugin, on_policy) pairs this adapter wires today; anything else fails at wrap time.
SUPPORTED = {(p, on) for p in ("per", "shep", "hetdps") for on in (False, True)} | {
    ("shppo", True),
    ("lbs", False),
}


@dataclass
class _GroupState:
    pm: pluggy.PluginManager
    spec: hetplug.HostSpec
    sampler: TrajectorySampler | None = None
    shppo: Any = None  # the group's SHPPOModel (plugin shppo)
    last_batch: Any = None  # the iteration's TrajectoryBatch, for auxiliary losses
    updates: int = 0
    metrics: dict[str, float] = field(default_factory=dict)


def _td_is_squared(loss, group: str) -> bool:
    """Whether ``loss`` writes (Q - y)^2 as its TD error (DQN, DDPG) rather than |Q - y|."""
    if isinstance(loss, QMixerLoss):
        return False  # replaced by WeightedQMixerLoss, which writes |Q_tot - y|
    if isinstance(loss, (DQNLoss, DDPGLoss)):
        return True
    if isinstance(loss, (SACLoss, DiscreteSACLoss)):
        return False
    raise ValueError(f"prioritised replay: unsupported loss {type(loss).__name__} in group {group!r}")


def _scalar_metrics(prefix: str, values: dict[str, Any]) -> dict[str, float]:
    out = {}
    for name, value in values.items():
        if isinstance(value, SharingPlan):  # HetDPS: agent -> network after the regrouping
            out.update({f"{prefix}{name}/agent_{i}": float(s) for i, s in enumerate(value.assignment)})
        elif isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape[0] == value.shape[1] > 1:
            n = value.shape[0]  # HetDPS distance matrix: its upper triangle
            out.update(
                {f"{prefix}{name}/{i}_{j}": float(value[i, j]) for i in range(n) for j in range(i + 1, n)}
            )
        elif isinstance(value, torch.Tensor) and value.numel() == 1:
            out[f"{prefix}{name}"] = float(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}{name}"] = float(value)
    return out


class HetplugCallback(Callback):
    """Runs hetplug plugins inside a BenchMARL experiment.

    Pass it in ``Experiment(callbacks=[HetplugCallback(...)])``, or call
    :func:`hetplug_benchmarl.wrap` on a built experiment.

    Args:
        plugins: plugin names, e.g. ``["shep"]``.
        options: per-plugin options, ``{"shep": {"grid_shape": (8, 8)}}``.
        positions: where agent positions are read (see :class:`PositionSource`).
        opponents: where opponent positions are read, or None.
        replay_window: on-policy (MAPPO, IPPO): rollouts the prioritised buffer keeps.

    Raises:
        ValueError: at construction for unknown plugins or options; at setup (before
            any training) for a plugin the algorithm cannot use or a bad positions slice.
    """

    def __init__(
        self,
        plugins: list[str] | tuple[str, ...] = (),
        options: dict[str, dict[str, Any]] | None = None,
        positions: dict[str, Any] | None = None,
        opponents: dict[str, Any] | None = None,
        replay_window: int = 1,
    ) -> None:
        super().__init__()
        if isinstance(plugins, str):
            plugins = [plugins]
        self.plugins = list(plugins)
        self.options = {k: dict(v) for k, v in (options or {}).items()}
        adapter = {"opponents": opponents, "replay_window": replay_window}
        if positions is not None:
            adapter["positions"] = positions
        self.adapter = AdapterOptions(**adapter)
        pm = hetplug.get_plugin_manager(self.plugins, self.options)  # names and options, now
        # The prioritiser is whichever plugin answers replay_add (built-in or third-party).
        self.prioritiser = next((h.plugin_name for h in pm.hook.hetplug_replay_add.get_hookimpls()), None)
        self.groups: dict[str, _GroupState] = {}
        self._fresh = False
        #: every value logged by on_train_end, in order: ``{name: [value per iteration]}``
        self.history: dict[str, list[float]] = {}
        #: HetDPS: ``{group: [(iteration, agent -> slot)]}`` and the distance matrices behind them
        self.plans: dict[str, list[tuple[int, tuple[int, ...]]]] = {}
        self.distances: dict[str, list[torch.Tensor]] = {}

    # BenchMARL pickles callbacks (with .experiment) into config.pkl: keep the recipe only.
    def __getstate__(self) -> dict[str, Any]:
        keep = ("plugins", "options", "adapter", "prioritiser")
        return {name: getattr(self, name) for name in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.experiment = None
        self._fresh = False
        self.groups = {}
        self.history = {}
        self.plans = {}
        self.distances = {}

    # ------------------------------------------------------------------ setup
    def on_setup(self) -> None:
        exp = self.experiment
        algorithm = type(exp.algorithm_config).__name__.removesuffix("Config")
        for name in self.plugins:
            if name in BUILTIN_PLUGINS and (name, exp.on_policy) not in SUPPORTED:
                kind = "on-policy" if exp.on_policy else "off-policy"
                raise ValueError(
                    f"plugin {name!r} is not available with {kind} {algorithm} in the BenchMARL adapter; "
                    f"supported here: {sorted(p for p, on in SUPPORTED if on == exp.on_policy)}"
                )
        prioritiser = self.prioritiser
        if prioritiser == "lbs" and algorithm not in LBS_ALGORITHMS:
            raise ValueError(
                f"plugin 'lbs' shares experience between independent learners ({', '.join(LBS_ALGORITHMS)}); "
                f"the algorithm is {algorithm}"
            )
        if prioritiser and exp.algorithm.has_rnn:
            raise ValueError(f"plugin {prioritiser!r}: recurrent models (sequence storage) are not supported")
        cfg = exp.config
        frames = cfg.collected_frames_per_batch(exp.on_policy)
        envs = cfg.n_envs_per_worker(exp.on_policy)
        if frames % envs:
            raise ValueError(
                f"collected frames per batch ({frames}) must be a multiple of n_envs_per_worker ({envs})"
            )
        steps = frames // envs
        rows = max(1, cfg.replay_buffer_memory_size(exp.on_policy) // frames) * envs
        her = "shep" in self.plugins and bool(self.options.get("shep", {}).get("group_her", False))
        if exp.on_policy:
            # rollouts kept (1: the current one), each with room for its Group-HER copies
            fraction = float(self.options.get("shep", {}).get("her_max_fraction", 0.5)) if her else 0.0
            rows = (rows + int(fraction * envs)) * self.adapter.replay_window
        #: on-policy with Group-HER and one rollout: start each rollout's storage empty
        self._fresh = bool(exp.on_policy and her and self.adapter.replay_window == 1)
        # Check every group before changing any (nothing is replaced if one fails).
        for group in exp.group_map:
            if "shep" in self.plugins:
                check_position_source(exp.observation_spec, group, self.adapter.positions, "positions")
                if self.adapter.opponents is not None:
                    og = self.adapter.opponents.group
                    if og not in exp.group_map:
                        raise ValueError(
                            f"opponents.group={og!r} is not an agent group; groups: {sorted(exp.group_map)}"
                        )
                    check_position_source(exp.observation_spec, og, self.adapter.opponents, "opponents")
            if "shppo" in self.plugins:
                shppo_model(exp, group)  # raises unless the policy is hetplug's SHPPO model
            if "hetdps" in self.plugins:
                check_group(self.options.get("hetdps", {}), exp, group)
            if prioritiser and exp.on_policy:
                if not isinstance(exp.losses[group], ClipPPOLoss):
                    raise ValueError(
                        f"prioritised replay: on-policy loss {type(exp.losses[group]).__name__} in group "
                        f"{group!r} is not supported (ClipPPOLoss: MAPPO, IPPO)"
                    )
            elif prioritiser:
                _td_is_squared(exp.losses[group], group)
        for group, agents in exp.group_map.items():
            old = exp.replay_buffers[group]
            discrete = not exp.continuous_actions
            lbs = prioritiser == "lbs"  # LBS items are transitions (T = 1, one slot each)
            spec = hetplug.HostSpec(
                n_agents=len(agents),
                max_steps=1 if lbs else steps,
                capacity=rows * steps if lbs else rows,
                device=old.storage.device if old.storage.device != "auto" else cfg.buffer_device,
                n_actions=int(exp.action_spec[group, "action"].space.n) if discrete else None,
                extra={"framework": "benchmarl", "algorithm": algorithm, "group": group},
            )
            pm = hetplug.get_plugin_manager(self.plugins, self.options)
            pm.hook.hetplug_configure.call_historic(kwargs={"spec": spec})
            if "hetdps" in self.plugins:
                bind_group(pm.get_plugin("hetdps"), exp, group)
            state = _GroupState(pm=pm, spec=spec)
            if "shppo" in self.plugins:
                state.shppo = shppo_model(exp, group)
                pm.get_plugin("shppo").bind(state.shppo.latent_net)
            if prioritiser == "lbs":
                self._install_lbs_buffer(group, spec, old, pm)
            elif prioritiser:
                state.sampler = self._install_buffer(group, spec, old, pm)
            self.groups[group] = state

    def _install_buffer(
        self, group: str, spec: hetplug.HostSpec, old, pm: pluggy.PluginManager
    ) -> TrajectorySampler:
        exp = self.experiment
        loss = exp.losses[group]
        advantage_key = None
        if exp.on_policy:  # priorities from |advantage| at extend; weighted PPO loss
            squared, advantage_key = False, loss.tensor_keys.advantage
            loss.__class__ = WeightedClipPPOLoss
        else:
            squared = _td_is_squared(loss, group)
        if isinstance(loss, QMixerLoss):
            loss.__class__ = WeightedQMixerLoss  # same parameters and targets, weighted loss
        sampler = TrajectorySampler(pm, spec.max_steps, spec.capacity, spec.n_agents, spec.device)
        sampler.generator = torch.Generator(device=sampler.device).manual_seed(int(exp.seed))
        transform = old._transform if old._transform is not None and len(old._transform) else None
        exp.replay_buffers[group] = HetplugReplayBuffer(
            storage=LazyTensorStorage(spec.capacity * spec.max_steps, device=spec.device),
            sampler=sampler,
            batch_size=old._batch_size,
            transform=transform,
            td_keys=((group, "td_error"), "td_error"),
            td_squared=squared,
            advantage_key=advantage_key,
            fresh_each_rollout=self._fresh,
        )
        return sampler

    def _install_lbs_buffer(self, group: str, spec: hetplug.HostSpec, old, pm: pluggy.PluginManager) -> None:
        exp = self.experiment
        loss = exp.losses[group]
        transform = old._transform if old._transform is not None and len(old._transform) else None
        exp.replay_buffers[group] = LBSReplayBuffer(
            pm=pm,
            loss=loss,
            group=group,
            td_keys=((group, "td_error"), "td_error"),
            td_squared=_td_is_squared(loss, group),
            generator=torch.Generator(device=spec.device).manual_seed(int(exp.seed)),
            storage=LazyTensorStorage(spec.capacity * spec.max_steps, device=spec.device),
            batch_size=old._batch_size,
            transform=transform,
        )

    # ------------------------------------------------------------------ per iteration
    def on_batch_collected(self, batch) -> None:
        exp = self.experiment
        for group, state in self.groups.items():
            tb = to_trajectory_batch(batch, group, self.adapter, discrete=not exp.continuous_actions)
            base = tb
            intrinsic = None
            relabelled = []
            metrics: dict[str, Any] = {}
            for res in state.pm.hook.hetplug_trajectories_collected(batch=tb):
                if res is None:
                    continue
                metrics.update(res.metrics)
                if res.extra_trajectories is not None:
                    relabelled.append(res.extra_trajectories)
                if res.intrinsic_reward is not None:
                    intrinsic = (
                        res.intrinsic_reward if intrinsic is None else intrinsic + res.intrinsic_reward
                    )
            if intrinsic is not None:
                key = ("next", group, "reward")
                if key not in batch.keys(include_nested=True):
                    key = ("next", "reward")
                reward = batch.get(key)
                bonus = intrinsic.reshape(*intrinsic.shape, *([1] * (reward.dim() - 2)))
                batch.set_(key, reward + bonus.to(reward.dtype))
                tb = tb.replace(
                    reward=tb.reward + intrinsic.reshape(*intrinsic.shape, *([1] * (tb.reward.dim() - 2)))
                )
                metrics["intrinsic_reward"] = intrinsic.mean()
            if state.sampler is not None:
                if self._fresh:  # the storage is emptied before this rollout is stored
                    state.pm.get_plugin(self.prioritiser).sampler.clear()
                state.sampler.stage(state.pm.hook.hetplug_replay_add(batch=tb))
                for her in relabelled:  # Group-HER: copies stored after the originals
                    slots = state.pm.hook.hetplug_replay_add(batch=her)
                    state.sampler.extra.append(
                        (slots, self._her_copies(batch, group, base, her), her.mask.sum(-1))
                    )
            if state.shppo is not None:  # the actor's own input, for the latent losses
                x = torch.cat([batch.get(k) for k in state.shppo.in_keys], dim=-1)
                state.last_batch = tb.replace(obs=x.detach())
            state.metrics = _scalar_metrics(f"hetplug/{group}/", metrics)

    def _her_copies(self, batch, group: str, base, her):
        """Group-HER's relabelled copies as BenchMARL transitions ``[B' * T]``: the source
        rows of the collected batch (intrinsic reward included), plus the HER reward, done
        at the segment's end, then BenchMARL's own ``process_batch`` (for on-policy
        algorithms: the copies' advantages)."""
        exp = self.experiment
        rows = her.extra["hetplug_row"][:, 0].to(batch.device)
        raw = batch[rows].exclude(*exp._get_excluded_keys(group)).to(exp.config.train_device)
        keys = raw.keys(include_nested=True)
        reward_key = ("next", group, "reward") if ("next", group, "reward") in keys else ("next", "reward")
        bonus = (her.reward - base.reward[rows.to(base.reward.device)]).to(raw.device)
        reward = raw.get(reward_key)
        raw.set(
            reward_key,
            reward + bonus.reshape(*bonus.shape, *([1] * (reward.dim() - bonus.dim()))).to(reward.dtype),
        )
        done = her.done.to(raw.device)
        for key in (
            ("next", group, "done"),
            ("next", group, "terminated"),
            ("next", "done"),
            ("next", "terminated"),
        ):
            if key in keys:
                value = raw.get(key)
                raw.set(key, value | done.reshape(*done.shape, *([1] * (value.dim() - 2))).expand_as(value))
        raw = exp.algorithm.process_batch(group, raw)
        return raw if exp.algorithm.has_rnn else raw.reshape(-1)

    def on_train_end(self, training_td, group: str) -> None:
        state = self.groups.get(group)
        if state is None:
            return
        state.updates += 1
        metrics = dict(state.metrics)
        if state.last_batch is not None:  # SHPPO: LatentNet and InferenceNet, own optimisers
            for out in state.pm.hook.hetplug_auxiliary_losses(batch=state.last_batch, update=state.updates):
                if out:
                    metrics.update(_scalar_metrics(f"hetplug/{group}/", out))
            for p in state.shppo.latent_net.parameters():
                p.grad = None  # BenchMARL's optimiser (it holds them too) must not reuse them
            state.last_batch = None
        for out in state.pm.hook.hetplug_after_update(update=state.updates):
            if out:
                metrics.update(_scalar_metrics(f"hetplug/{group}/", out))
                if isinstance(out.get("hetdps/plan"), SharingPlan):
                    self.plans.setdefault(group, []).append((state.updates, out["hetdps/plan"].assignment))
                    self.distances.setdefault(group, []).append(out["hetdps/distance"].detach().cpu())
        if any(state.pm.get_plugin(name) is not None for name in PRIORITISERS):
            p = self.priorities(group)
            metrics.update(
                _scalar_metrics(
                    f"hetplug/{group}/",
                    {"priority_mean": p.mean(), "priority_max": p.max(), "stored": p.numel()},
                )
            )
        self.experiment.logger.log(metrics, step=self.experiment.n_iters_performed)
        state.metrics = metrics
        for name, value in metrics.items():
            self.history.setdefault(name, []).append(value)

    # ------------------------------------------------------------------ inspection
    def plugin_manager(self, group: str) -> pluggy.PluginManager:
        """The plugin manager serving ``group`` (one per agent group)."""
        return self.groups[group].pm

    def priorities(self, group: str) -> torch.Tensor:
        """``[stored]`` trajectory priorities of ``group``'s prioritiser (``per``/``shep``)."""
        for name in PRIORITISERS:
            plugin = self.groups[group].pm.get_plugin(name)
            if plugin is not None:
                return plugin.sampler.priorities
        raise ValueError(f"no built-in prioritiser ({', '.join(PRIORITISERS)}) is selected")

    # ------------------------------------------------------------------ checkpoints
    def on_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict["hetplug"] = {
            group: {"plugins": hetplug.plugin_state(s.pm), "updates": s.updates}
            for group, s in self.groups.items()
        }

    def on_load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("hetplug")
        if saved is None:
            raise ValueError(
                "the checkpoint has no 'hetplug' entry: it was saved without the hetplug callback"
            )
        if sorted(saved) != sorted(self.groups):
            raise ValueError(
                f"checkpoint groups {sorted(saved)} differ from the experiment's {sorted(self.groups)}"
            )
        for group, state in saved.items():
            hetplug.load_plugin_state(self.groups[group].pm, state["plugins"])
            self.groups[group].updates = state["updates"]
