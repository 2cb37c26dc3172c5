"""Prioritised replay's wiring: PER's, SHEP's, and that of any plugin that implements
``hetplug_replay_add`` (the prioritiser; hetplug allows one per run).

Needs from the host: the Q-learner (IQL, VDN, QMIX: ``learner: q_learner``, mixer none,
vdn or qmix) or the PPO learner (IPPO, MAPPO), with what the weighted updates read of
them (:func:`~hetplug_epymarl.updates.check_host_learner`), and the host's own
prioritised buffer off (``prioritized_buffer: False``).

Installs:

* storage: each episode (Group-HER's copies included) is written at the slot
  ``hetplug_replay_add`` returns, one slot per episode, so priorities are per trajectory;
* sampling: ``buffer.sample(bs)`` draws episodes with ``hetplug_replay_sample``; their
  slots and IS weights wait here for the learner;
* the update: ``learner.train`` on that sample is the weighted Q or PPO update
  (:mod:`hetplug_epymarl.updates`) on the host learner's own objects, and its TD errors
  go back through ``hetplug_update_priorities``;
* checkpoints: the stored episodes, which the priorities point at (EPyMARL saves no buffer).
"""

from __future__ import annotations

from typing import Any

import torch

import hetplug
from hetplug_epymarl.updates import check_host_learner, weighted_ppo_update, weighted_q_update

#: the mixers whose update :func:`~hetplug_epymarl.updates.weighted_q_update` computes
MIXERS = (None, "vdn", "qmix")


class PrioritisedReplay:
    """The buffer stores and samples through the prioritiser ``name``."""

    def __init__(self, pm, name: str, seed: int) -> None:
        self.pm = pm
        self.name = name
        self.seed = int(seed)
        self.generator: torch.Generator | None = None
        self.update = weighted_q_update
        self.last_sample: hetplug.SampleResult | None = None

    def check(self, args: Any, host) -> None:
        """Before anything is built: the learner, the mixer and the host's own buffer."""
        host.require_q_or_ppo_learner(self.name, args)
        if getattr(args, "prioritized_buffer", False):
            raise ValueError(
                "prioritized_buffer=True: the host's own prioritised buffer and hetplug's "
                f"{self.name!r} cannot both be on; set prioritized_buffer: False"
            )
        mixer = getattr(args, "mixer", None)
        if mixer not in MIXERS:
            raise ValueError(f"hetplug.plugins: mixer={mixer!r} is not supported (None, vdn or qmix)")

    def buffer_built(self, buffer) -> None:
        self.generator = torch.Generator(device=buffer.device).manual_seed(self.seed)

    def learner_built(self, learner, host) -> None:
        is_ppo = isinstance(learner, host.ppo_learner)
        check_host_learner(learner, "ppo" if is_ppo else "q")
        self.update = weighted_ppo_update if is_ppo else weighted_q_update

    # ------------------------------------------------------------------ buffer
    def store(self, buffer, ep_batch, tb: hetplug.TrajectoryBatch) -> None:
        buffer.write(ep_batch, self.pm.hook.hetplug_replay_add(batch=tb))

    def check_stored(self, buffer, batch_size: int) -> None:
        if not buffer.can_sample(batch_size):
            raise ValueError(
                f"batch_size={batch_size} is more than the {buffer.episodes_in_buffer} stored episodes"
            )

    def sample(self, buffer, batch_size: int):
        self.check_stored(buffer, batch_size)
        res = self.pm.hook.hetplug_replay_sample(batch_size=batch_size, generator=self.generator, td_fn=None)
        self.last_sample = res
        return buffer[res.indices.cpu().numpy()]

    def take_sample(self, batch_size: int) -> hetplug.SampleResult | None:
        """The slots and IS weights of the batch the learner is training on (once)."""
        sample, self.last_sample = self.last_sample, None
        drawn = None if sample is None else sample.indices.shape[-1]
        if sample is not None and drawn != batch_size:
            raise RuntimeError(
                f"hetplug: the learner trains on {batch_size} episodes but the buffer's last "
                f"sample drew {drawn}"
            )
        return sample

    # ------------------------------------------------------------------ learner
    def train(self, learner, batch, t_env: int) -> bool:
        """The weighted update on the last sample; False when ``batch`` is not one (the
        host's own ``train`` then runs)."""
        sample = self.take_sample(batch.batch_size)
        if sample is None:
            return False
        td, mask = self.update(learner, batch, sample.weights, t_env)
        self.pm.hook.hetplug_update_priorities(indices=sample.indices, td_error=td, mask=mask)
        return True

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, buffer) -> dict[str, Any]:
        return buffer.contents_state_dict()

    def check_state(self, buffer, state: dict[str, Any] | None) -> None:
        if state is None:
            raise ValueError("hetplug.th holds no replay buffer: it was saved without a prioritiser")
        buffer.check_contents(state)

    def load_state_dict(self, buffer, state: dict[str, Any]) -> None:
        buffer.load_contents(state)
