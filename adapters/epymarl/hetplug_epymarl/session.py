"""One hetplug run inside one EPyMARL run: the plugin manager, the buffer it prioritises
and the sample the learner is about to train on.

EPyMARL calls, in ``run_sequential`` (FACTS.md):

    ReplayBuffer(...)              -> Session.attach_buffer: HostSpec, plugins configured
    learner = REGISTRY[...](...)   -> HetplugLearner around the host's learner
    loop: runner.run() -> buffer.insert_episode_batch  : trajectories_collected, replay_add
          buffer.sample(bs)        -> replay_sample (ids and IS weights kept here)
          learner.train(batch)     -> weighted loss, update_priorities, after_update
          learner.save_models(p)   -> plugin and buffer state in p/hetplug.th
"""

from __future__ import annotations

from typing import Any

import torch

import hetplug
from hetplug_epymarl.settings import Settings, SliceSource


def _width(scheme: dict, key: str) -> int:
    vshape = scheme[key]["vshape"]
    return int(vshape) if isinstance(vshape, int) else int(vshape[-1])


def _read(ep_batch, source: SliceSource, n_agents: int, per_agent: bool) -> torch.Tensor:
    """``[B, T, N or K, dim]`` positions from an obs or state slice."""
    start, stop = source.slice
    if source.source == "obs":
        value = ep_batch["obs"][..., start:stop]  # [B, T, N, w]
        if not per_agent:
            value = value[:, :, source.agent]  # [B, T, w]: one agent's view of the opponents
    else:
        value = ep_batch["state"][..., start:stop]  # [B, T, w]
    if value.dim() == 3:
        value = value.reshape(*value.shape[:2], -1, source.dim)
    return value.float()


class Session:
    """The hetplug state of one EPyMARL run (created when ``args.hetplug`` is set)."""

    def __init__(self, settings: Settings, args: Any, host_name: str) -> None:
        self.settings = settings
        self.args = args
        self.host_name = host_name
        self.pm = None
        self.spec: hetplug.HostSpec | None = None
        self.buffer = None
        self.learner = None  # the HetplugLearner, once EPyMARL built it
        self.generator: torch.Generator | None = None
        self.last_sample: hetplug.SampleResult | None = None
        #: LBS: per-column (reward, terminated, filled) of the last sampled batch
        self.lbs_steps: tuple[torch.Tensor, ...] | None = None
        self.updates = 0
        #: HetDPS regroupings: ``[(update, agent -> slot)]``
        self.plans: list[tuple[int, tuple[int, ...]]] = []
        #: latest scalar metrics, logged by the learner through EPyMARL's logger
        self.metrics: dict[str, float | torch.Tensor] = {}

    # ------------------------------------------------------------------ setup
    def attach_buffer(self, buffer) -> None:
        """Configure the plugins for ``buffer``'s sizes; checks position slices first."""
        scheme, groups = buffer.scheme, buffer.groups
        n_agents = int(groups["agents"])
        obs_w, state_w = _width(scheme, "obs"), _width(scheme, "state")
        s = self.settings
        if "shep" in s.plugins:
            s.positions.check(obs_w, state_w, n_agents, "hetplug.shep.positions", per_agent=True)
            if s.opponents is not None:
                s.opponents.check(obs_w, state_w, n_agents, "hetplug.shep.opponents", per_agent=False)
        self.spec = hetplug.HostSpec(
            n_agents=n_agents,
            max_steps=int(buffer.max_seq_length),
            capacity=int(buffer.buffer_size),
            device=buffer.device,
            n_actions=_width(scheme, "avail_actions"),
            extra={"framework": self.host_name, "learner": getattr(self.args, "learner", None)},
        )
        pm = hetplug.get_plugin_manager(list(s.plugins), s.options)
        pm.hook.hetplug_configure.call_historic(kwargs={"spec": self.spec})
        self.pm = pm
        self.buffer = buffer
        self.generator = torch.Generator(device=buffer.device).manual_seed(int(getattr(self.args, "seed", 0)))

    # ------------------------------------------------------------------ data
    def trajectory_batch(self, ep_batch) -> hetplug.TrajectoryBatch:
        """EPyMARL ``EpisodeBatch`` ``[B, T]`` -> plain tensors on the plugins' device."""
        dev = self.spec.device
        n = self.spec.n_agents
        B, T = ep_batch.batch_size, ep_batch.max_seq_length
        s = self.settings
        reward = ep_batch["reward"]
        reward = reward.squeeze(-1) if reward.shape[-1] == 1 else reward
        positions = opponents = None
        if "shep" in s.plugins:
            positions = _read(ep_batch, s.positions, n, per_agent=True).to(dev)
            if s.opponents is not None:
                opponents = _read(ep_batch, s.opponents, n, per_agent=False).to(dev)
        return hetplug.TrajectoryBatch(
            reward=reward.float().to(dev),
            mask=ep_batch["filled"].squeeze(-1).bool().to(dev),
            done=ep_batch["terminated"].squeeze(-1).bool().to(dev),
            obs=ep_batch["obs"].to(dev),
            state=ep_batch["state"].to(dev),
            actions=ep_batch["actions"].squeeze(-1).long().to(dev),
            positions=positions,
            opponent_positions=opponents,
            # the source row travels with Group-HER's relabelled copies
            extra={"hetplug_row": torch.arange(B, device=dev).unsqueeze(1).expand(B, T)},
        )

    def collected(self, ep_batch) -> tuple[hetplug.TrajectoryBatch, list]:
        """trajectories_collected: descriptors, and the intrinsic reward added in place to
        ``ep_batch``'s reward (so EPyMARL trains on it).

        Returns the (updated) batch and the relabelled copies to store beside it (Group-HER),
        as ``[(EpisodeBatch, TrajectoryBatch)]``.
        """
        tb = self.trajectory_batch(ep_batch)
        intrinsic = None
        relabelled = []
        for res in self.pm.hook.hetplug_trajectories_collected(batch=tb):
            if res is None:
                continue
            self.metrics.update({k: v for k, v in res.metrics.items() if _is_scalar(v)})
            if res.intrinsic_reward is not None:
                intrinsic = res.intrinsic_reward if intrinsic is None else intrinsic + res.intrinsic_reward
            if res.extra_trajectories is not None:
                relabelled.append(res.extra_trajectories)
        copies = [(self._episode_copy(ep_batch, tb, her), her) for her in relabelled]
        if intrinsic is not None:
            bonus = (intrinsic * tb.mask).to(tb.reward.dtype)
            # tb.reward may be a view of the host's reward: build the new one first.
            tb = tb.replace(reward=tb.reward + bonus.reshape(*bonus.shape, *([1] * (tb.reward.dim() - 2))))
            reward = ep_batch.data.transition_data["reward"]
            reward += bonus.reshape(*bonus.shape, *([1] * (reward.dim() - 2))).to(reward.device, reward.dtype)
            self.metrics["intrinsic_reward"] = bonus.sum() / tb.mask.sum().clamp_min(1)
            for copy, her in copies:  # the copies get their source rows' intrinsic reward too
                rows = her.extra["hetplug_row"][:, 0]
                r = copy.data.transition_data["reward"]
                r += bonus[rows].reshape(*r.shape[:2], *([1] * (r.dim() - 2))).to(r.device, r.dtype)
        return tb, copies

    @staticmethod
    def _episode_copy(ep_batch, tb: hetplug.TrajectoryBatch, her: hetplug.TrajectoryBatch):
        """An EPyMARL EpisodeBatch of Group-HER's copies: the source episodes with the
        relabelled reward, termination and mask."""
        rows = her.extra["hetplug_row"][:, 0]
        copy = ep_batch[rows.cpu().numpy()]  # fancy indexing: new tensors
        data = copy.data.transition_data
        her_bonus = her.reward - tb.reward[rows]  # [B', T(, N)]: only what relabelling added
        r = data["reward"]
        r += her_bonus.reshape(*r.shape[:2], -1).to(r.device, r.dtype)
        data["terminated"].copy_(her.done.reshape(data["terminated"].shape).to(data["terminated"].dtype))
        data["filled"].copy_(her.mask.reshape(data["filled"].shape).to(data["filled"].dtype))
        return copy

    # ------------------------------------------------------------------ learner side
    def take_sample(self, batch_size: int) -> hetplug.SampleResult | None:
        """The ids and IS weights of the batch the learner is training on (once)."""
        sample, self.last_sample = self.last_sample, None
        drawn = None if sample is None else sample.indices.shape[-1]
        if sample is not None and drawn != batch_size:
            raise RuntimeError(
                f"hetplug: the learner trains on {batch_size} episodes but the buffer's last "
                f"sample drew {drawn}"
            )
        return sample

    def auxiliary(self, batch, mac) -> None:
        """auxiliary_losses (SHPPO's latent losses) on the batch the learner just trained on,
        with the agent inputs and memories the LatentNet saw while acting."""
        if not self.pm.hook.hetplug_auxiliary_losses.get_hookimpls():
            return
        from hetplug_epymarl.shppo_agent import agent_inputs_and_memory

        inputs, memory = agent_inputs_and_memory(mac, batch)
        reward = batch["reward"]
        tb = hetplug.TrajectoryBatch(
            reward=(reward.squeeze(-1) if reward.shape[-1] == 1 else reward).float(),
            mask=batch["filled"].squeeze(-1).bool(),
            done=batch["terminated"].squeeze(-1).bool(),
            obs=inputs,
            state=batch["state"],
            extra={"hidden_state": memory},
        )
        for out in self.pm.hook.hetplug_auxiliary_losses(batch=tb, update=self.updates + 1):
            if out:
                self.metrics.update({k: v for k, v in out.items() if _is_scalar(v)})

    def after_update(self) -> None:
        self.updates += 1
        for out in self.pm.hook.hetplug_after_update(update=self.updates):
            if out:
                self.metrics.update({k: v for k, v in out.items() if _is_scalar(v)})
                if "hetdps/plan" in out:  # agent -> network after this regrouping
                    self._record_plan(out["hetdps/plan"])

    def _record_plan(self, plan) -> None:
        """Keep a HetDPS plan, expose each agent's slot as a metric and write the plan to
        the host's console log (once per regrouping interval)."""
        self.plans.append((self.updates, plan.assignment))
        self.metrics.update({f"hetdps/slot/agent_{i}": float(s) for i, s in enumerate(plan.assignment)})
        console = getattr(getattr(self.learner, "logger", None), "console_logger", None)
        if console is not None:
            console.info(f"hetplug hetdps after update {self.updates}: {plan}")

    def priorities(self) -> torch.Tensor:
        """``[stored]`` trajectory priorities of the ``per``/``shep`` plugin."""
        name = self.settings.prioritiser
        if name is None or name == "lbs":
            raise ValueError("no prioritiser (per, shep) is selected in hetplug.plugins")
        return self.pm.get_plugin(name).sampler.priorities

    def scalar_metrics(self) -> dict[str, float]:
        """Metrics as floats (one host sync per value; called once per log interval)."""
        out = {k: float(v) for k, v in self.metrics.items()}
        if self.settings.prioritiser in ("per", "shep") and self.pm is not None:
            p = self.priorities()
            if p.numel():
                out.update(priority_mean=float(p.mean()), priority_max=float(p.max()))
            out["stored"] = float(p.numel())
        return out

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "plugins": hetplug.plugin_state(self.pm),
            "updates": self.updates,
            "buffer": self.buffer.hetplug_state_dict() if self.settings.prioritiser else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.settings.prioritiser and state.get("buffer") is None:
            raise ValueError("hetplug.th holds no replay buffer: it was saved without a prioritiser")
        if self.settings.prioritiser:
            self.buffer.check_hetplug_state(state["buffer"])  # before anything changes
        hetplug.load_plugin_state(self.pm, state["plugins"])
        if self.settings.prioritiser:
            self.buffer.load_hetplug_state_dict(state["buffer"])
        self.updates = int(state["updates"])


def _is_scalar(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return isinstance(value, (int, float)) and not isinstance(value, bool)
