"""One hetplug run inside one EPyMARL run: the plugin manager and the dispatch of the
host's events to the run's wiring (:mod:`hetplug_epymarl.wiring`).

EPyMARL calls, in ``run_sequential`` (FACTS.md)::

    ReplayBuffer(scheme, ...)      -> scheme_fields  entries stored with each step (SHPPO's latent)
                                   -> buffer_built   HostSpec (its extra: gamma, ...), hetplug_configure
    mac = REGISTRY[args.mac](...)  -> mac_class      (agent wiring: HetDPS, SHPPO)
    learner = REGISTRY[...](...)   -> learner_built  hetplug_bind (HostObjects)
    loop: buffer.insert_episode_batch -> insert      collection wiring, then replay storage
          buffer.sample(bs)           -> sample      replay wiring (or the host's)
          learner.train(batch, ...)   -> train       replay wiring's update (or the host's),
                                                     auxiliary losses, hetplug_after_update, logging
          learner.save_models(p)      -> state_dict  (hetplug_epymarl.checkpoint)
"""

from __future__ import annotations

from typing import Any

import torch

import hetplug
from hetplug.state import require_keys, state_int
from hetplug_epymarl.episodes import trajectory_batch, width
from hetplug_epymarl.learner import HetplugLearner
from hetplug_epymarl.metrics import MetricsLog
from hetplug_epymarl.wiring import select


class Session:
    """The hetplug state of one EPyMARL run (created when ``args.hetplug`` selects plugins).

    Attributes:
        pm: the run's plugin manager.
        wiring: the active wiring objects by role.
        buffer: hetplug's replay buffer, once EPyMARL built it.
        learner: the :class:`HetplugLearner`, once EPyMARL built it.
        updates: learner updates so far (``hetplug_after_update``'s counter).
    """

    def __init__(self, config: hetplug.HetplugConfig, args: Any, host) -> None:
        self.config = config
        self.args = args
        self.host = host
        self.pm = hetplug.get_plugin_manager(list(config.plugins), config.options)
        self.log = MetricsLog(getattr(args, "learner_log_interval", 0))
        self.wiring = select(self.pm, config, int(getattr(args, "seed", 0)), self.log)
        self.spec: hetplug.HostSpec | None = None
        self.buffer = None
        self.learner: HetplugLearner | None = None
        self.updates = 0

    # ------------------------------------------------------------------ setup
    def check(self) -> None:
        """Before EPyMARL builds anything: the wiring against the run's args."""
        for part in (self.wiring.replay, self.wiring.agent):
            if part is not None:
                part.check(self.args, self.host)

    @property
    def recorder(self):
        """What the environment reports beyond the episode batch (positions from an
        extractor, alive masks, success), for the plugins that read collected episodes;
        None when no plugin does (:mod:`hetplug_epymarl.env_fields`)."""
        return None if self.wiring.collection is None else self.wiring.collection.recorder

    def mac_class(self, base: type) -> type:
        return base if self.wiring.agent is None else self.wiring.agent.mac_class(base)

    def scheme_fields(self) -> dict[str, dict]:
        """Entries the agent wiring stores in the episode batch (EPyMARL's scheme format)."""
        fields = getattr(self.wiring.agent, "scheme", None)
        return {} if fields is None else fields(self.args)

    def buffer_built(self, buffer) -> None:
        self.spec = hetplug.HostSpec(
            n_agents=int(buffer.groups["agents"]),
            max_steps=int(buffer.max_seq_length),
            capacity=int(buffer.buffer_size),
            device=buffer.device,
            n_actions=width(buffer.scheme, "avail_actions"),
            total_env_steps=int(self.args.t_max) if getattr(self.args, "t_max", None) else None,
            extra={
                "framework": self.host.name,
                "learner": getattr(self.args, "learner", None),
                "gamma": float(self.args.gamma) if getattr(self.args, "gamma", None) is not None else None,
            },
        )
        if self.wiring.collection is not None:  # position slices, before any plugin sees them
            self.wiring.collection.buffer_built(buffer, self.spec)
        self.pm.hook.hetplug_configure.call_historic(kwargs={"spec": self.spec})
        if self.wiring.replay is not None:
            self.wiring.replay.buffer_built(buffer)
        self.buffer = buffer

    def learner_built(self, learner) -> HetplugLearner:
        if self.wiring.replay is not None:
            self.wiring.replay.learner_built(learner, self.host)
        objects = {} if self.wiring.agent is None else self.wiring.agent.host_objects(learner)
        self.pm.hook.hetplug_bind(host=hetplug.HostObjects(**objects))
        self.learner = HetplugLearner(learner, self)
        return self.learner

    # ------------------------------------------------------------------ buffer
    def insert(self, buffer, ep_batch) -> None:
        """``insert_episode_batch``: the plugins see the episodes (and may add copies), then
        each is stored by the prioritiser, or as the host does."""
        if self.wiring.collection is not None:
            tb, copies = self.wiring.collection.collected(ep_batch)
        else:
            tb, copies = trajectory_batch(ep_batch, self.spec.device), []
        for episodes, plain in [(ep_batch, tb), *copies]:
            if self.wiring.replay is None:
                buffer.host_insert(episodes)
            else:
                self.wiring.replay.store(buffer, episodes, plain)

    def sample(self, buffer, batch_size: int):
        if self.wiring.replay is None:
            return buffer.host_sample(batch_size)
        return self.wiring.replay.sample(buffer, batch_size)

    # ------------------------------------------------------------------ learner
    def train(self, learner, batch, t_env: int, episode_num: int, *args: Any, **kwargs: Any):
        """``learner.train``: the replay wiring's update or the host's, then the plugins'
        auxiliary losses and ``after_update``, and the metrics to the host's logger."""
        out = None
        if self.wiring.replay is None or not self.wiring.replay.train(learner, batch, t_env):
            out = learner.train(batch, t_env, episode_num, *args, **kwargs)
        if self.wiring.auxiliary is not None:
            self.wiring.auxiliary.train(learner.mac, batch, self.updates + 1)
        self.updates += 1
        console = getattr(learner.logger, "console_logger", None)
        for values in self.pm.hook.hetplug_after_update(update=self.updates):
            self.log.after_update(values, self.updates, console)
        self.log.write(learner.logger, t_env)
        return out

    # ------------------------------------------------------------------ inspection
    @property
    def metrics(self) -> dict[str, Any]:
        """The plugins' latest values, ``{"<method>/<name>": value}``."""
        return self.log.values

    @property
    def plans(self) -> list[tuple[int, tuple[int, ...]]]:
        """HetDPS regroupings so far: ``[(update, agent -> slot)]``."""
        return self.log.plans

    def priorities(self) -> torch.Tensor:
        """``[stored]`` trajectory priorities, as the prioritiser last reported them
        (``<name>/priorities`` from ``hetplug_after_update``)."""
        found = [v for k, v in self.metrics.items() if k.endswith("/priorities")]
        if not found:
            raise ValueError("no prioritiser has reported priorities (per and shep do after each update)")
        return found[0]

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        replay = self.wiring.replay
        return {
            "plugins": hetplug.plugin_state(self.pm),
            "updates": self.updates,
            "buffer": None if replay is None else replay.state_dict(self.buffer),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`: the episodes, every plugin's state and the update
        counter are all checked before anything changes."""
        require_keys("hetplug.th", state, ("plugins", "updates"))
        state_int("hetplug.th", state, "updates", 0)
        replay = self.wiring.replay
        if replay is not None:
            replay.check_state(self.buffer, state.get("buffer"))
        hetplug.check_plugin_state(self.pm, state["plugins"])
        hetplug.load_plugin_state(self.pm, state["plugins"])
        if replay is not None:
            replay.load_state_dict(self.buffer, state["buffer"])
        self.updates = int(state["updates"])
