"""A prioritised episode buffer in place of EPyMARL's ``run.ReplayBuffer``.

It subclasses the host's own ``ReplayBuffer`` (so storage, indexing and ``EpisodeBatch``
behaviour are the host's) and changes three things:

* ``insert_episode_batch`` runs ``trajectories_collected`` (SHEP descriptors, intrinsic
  reward) and ``replay_add``, then writes each episode at the slot the plugin returned:
  one slot per episode, so priorities are trajectory-level;
* ``sample`` draws episodes by priority (``replay_sample``) and keeps their ids and IS
  weights in the session for the learner;
* ``hetplug_state_dict`` / ``load_hetplug_state_dict`` carry the stored episodes with the
  priorities, since EPyMARL's checkpoints hold no buffer.
"""

from __future__ import annotations

from typing import Any


def make_buffer_class(base: type, session_getter) -> type:
    """A subclass of the host's ``ReplayBuffer`` bound to the active session."""

    class HetplugReplayBuffer(base):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.hetplug = session_getter()
            self.hetplug.attach_buffer(self)

        def insert_episode_batch(self, ep_batch) -> None:
            tb, copies = self.hetplug.collected(ep_batch)
            self._store(ep_batch, tb)
            for copy, her in copies:  # Group-HER's relabelled episodes, beside the originals
                self._store(copy, her)

        def _store(self, ep_batch, tb) -> None:
            session = self.hetplug
            if session.settings.prioritiser is None:
                super().insert_episode_batch(ep_batch)
                return
            slots = session.pm.hook.hetplug_replay_add(batch=tb)
            ids = slots.cpu().numpy()  # EpisodeBatch indexes with numpy ids (host rule)
            T = ep_batch.max_seq_length
            self.update(ep_batch.data.transition_data, ids, slice(0, T), mark_filled=False)
            if ep_batch.data.episode_data:
                self.update(ep_batch.data.episode_data, ids)
            n = len(ids)
            self.buffer_index = (self.buffer_index + n) % self.buffer_size
            self.episodes_in_buffer = min(self.buffer_size, self.episodes_in_buffer + n)

        def sample(self, batch_size: int):
            session = self.hetplug
            if session.settings.prioritiser is None:
                return super().sample(batch_size)
            if not self.can_sample(batch_size):
                raise ValueError(
                    f"batch_size={batch_size} is more than the {self.episodes_in_buffer} stored episodes"
                )
            if session.settings.prioritiser == "lbs":
                from hetplug_epymarl import lbs

                return lbs.sample(self, session, batch_size)
            res = session.pm.hook.hetplug_replay_sample(
                batch_size=batch_size, generator=session.generator, td_fn=None
            )
            session.last_sample = res
            return self[res.indices.cpu().numpy()]

        # -------------------------------------------------------------- checkpoints
        def hetplug_state_dict(self) -> dict[str, Any]:
            return {
                "transition_data": {k: v.clone() for k, v in self.data.transition_data.items()},
                "episode_data": {k: v.clone() for k, v in self.data.episode_data.items()},
                "buffer_index": self.buffer_index,
                "episodes_in_buffer": self.episodes_in_buffer,
            }

        def check_hetplug_state(self, state: dict[str, Any]) -> None:
            for part in ("transition_data", "episode_data"):
                mine = getattr(self.data, part)
                saved = state[part]
                if sorted(saved) != sorted(mine):
                    raise ValueError(f"saved buffer {part} keys {sorted(saved)} differ from {sorted(mine)}")
                for k, v in saved.items():
                    if tuple(v.shape) != tuple(mine[k].shape):
                        raise ValueError(
                            f"saved buffer {part}[{k!r}] has shape {tuple(v.shape)}, this run's is "
                            f"{tuple(mine[k].shape)} (buffer_size, episode length and env must match)"
                        )

        def load_hetplug_state_dict(self, state: dict[str, Any]) -> None:
            self.check_hetplug_state(state)
            for part in ("transition_data", "episode_data"):
                mine = getattr(self.data, part)
                for k, v in state[part].items():
                    mine[k].copy_(v)
            self.buffer_index = int(state["buffer_index"])
            self.episodes_in_buffer = int(state["episodes_in_buffer"])

    return HetplugReplayBuffer


__all__ = ["make_buffer_class"]
