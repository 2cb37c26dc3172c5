"""hetplug's ``ReplayBuffer``: a subclass of the host's own, in place of ``run.ReplayBuffer``
for a run with the ``hetplug`` key.

Storage, indexing and ``EpisodeBatch`` behaviour stay the host's. The buffer hands EPyMARL's
three events to the run's session (:mod:`hetplug_epymarl.session`): its construction,
``insert_episode_batch`` and ``sample``. At construction it adds the entries the wiring
stores with each step (``Session.scheme_fields``, e.g. SHPPO's ``hetplug_latent``) to
the scheme dict, which EPyMARL's ``run_sequential`` passes on to its runner unchanged. What the wiring needs of it is here too: the
host's own insert and sample, a writer that stores episodes at given slots, and its
contents for checkpoints.
"""

from __future__ import annotations

from typing import Any

import torch

from hetplug.state import require_keys, state_int


def make_buffer_class(base: type, session_getter) -> type:
    """A subclass of the host's ``ReplayBuffer`` that serves the active session."""

    class HetplugReplayBuffer(base):
        def __init__(self, scheme: dict, *args: Any, **kwargs: Any) -> None:
            session = session_getter()
            # Entries the wiring stores with each step (SHPPO's latents). EPyMARL hands this
            # same dict to its runner after building the buffer, so its episode batches
            # carry them too.
            scheme.update(session.scheme_fields())
            super().__init__(scheme, *args, **kwargs)  # PyMARLzoo+'s takes args third: passed through
            self.hetplug = session
            self.hetplug.buffer_built(self)

        def insert_episode_batch(self, ep_batch) -> None:
            self.hetplug.insert(self, ep_batch)

        def sample(self, batch_size: int):
            return self.hetplug.sample(self, batch_size)

        # -------------------------------------------------------------- the host's own
        def host_insert(self, ep_batch) -> None:
            super().insert_episode_batch(ep_batch)

        def host_sample(self, batch_size: int):
            return super().sample(batch_size)

        # -------------------------------------------------------------- writer
        def write(self, ep_batch, slots: torch.Tensor) -> None:
            """Store episode ``b`` of ``ep_batch`` at slot ``slots[b]`` (one slot per episode)."""
            ids = slots.cpu().numpy()  # EpisodeBatch indexes with numpy ids (host rule)
            T = ep_batch.max_seq_length
            self.update(ep_batch.data.transition_data, ids, slice(0, T), mark_filled=False)
            if ep_batch.data.episode_data:
                self.update(ep_batch.data.episode_data, ids)
            n = len(ids)
            self.buffer_index = (self.buffer_index + n) % self.buffer_size
            self.episodes_in_buffer = min(self.buffer_size, self.episodes_in_buffer + n)

        # -------------------------------------------------------------- contents
        def contents_state_dict(self) -> dict[str, Any]:
            return {
                "transition_data": {k: v.clone() for k, v in self.data.transition_data.items()},
                "episode_data": {k: v.clone() for k, v in self.data.episode_data.items()},
                "buffer_index": self.buffer_index,
                "episodes_in_buffer": self.episodes_in_buffer,
            }

        def check_contents(self, state: dict[str, Any]) -> None:
            """Raise unless ``state`` fits this buffer (every key, the same shapes and dtypes,
            counters in range); nothing changes."""
            where = "hetplug.th buffer"
            require_keys(
                where, state, ("transition_data", "episode_data", "buffer_index", "episodes_in_buffer")
            )
            for part in ("transition_data", "episode_data"):
                mine = getattr(self.data, part)
                saved = state[part]
                if not isinstance(saved, dict) or sorted(saved) != sorted(mine):
                    keys = sorted(saved) if isinstance(saved, dict) else saved
                    raise ValueError(f"saved buffer {part} keys {keys} differ from {sorted(mine)}")
                for k, v in saved.items():
                    if not isinstance(v, torch.Tensor) or v.dtype != mine[k].dtype:
                        got = f"dtype {v.dtype}" if isinstance(v, torch.Tensor) else type(v).__name__
                        raise TypeError(
                            f"saved buffer {part}[{k!r}] must be a {mine[k].dtype} tensor, got {got}"
                        )
                    if tuple(v.shape) != tuple(mine[k].shape):
                        raise ValueError(
                            f"saved buffer {part}[{k!r}] has shape {tuple(v.shape)}, this run's is "
                            f"{tuple(mine[k].shape)} (buffer_size, episode length and env must match)"
                        )
            state_int(where, state, "buffer_index", 0, self.buffer_size - 1)
            state_int(where, state, "episodes_in_buffer", 0, self.buffer_size)

        def load_contents(self, state: dict[str, Any]) -> None:
            self.check_contents(state)
            for part in ("transition_data", "episode_data"):
                mine = getattr(self.data, part)
                for k, v in state[part].items():
                    mine[k].copy_(v)
            self.buffer_index = int(state["buffer_index"])
            self.episodes_in_buffer = int(state["episodes_in_buffer"])

    return HetplugReplayBuffer


__all__ = ["make_buffer_class"]
