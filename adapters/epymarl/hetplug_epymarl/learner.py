"""The host's learner with the session behind it: EPyMARL calls ``learner.train``,
``save_models`` and ``load_models``; every other attribute (mac, mixer, cuda, ...) is the
host learner's own."""

from __future__ import annotations

from typing import Any

from hetplug_epymarl import checkpoint


class HetplugLearner:
    """Wraps the learner EPyMARL built from its registry (``learner: q_learner``, ...)."""

    def __init__(self, inner, session) -> None:
        self.inner = inner
        self.session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["inner"], name)

    def train(self, batch, t_env: int, episode_num: int, *args: Any, **kwargs: Any):
        return self.session.train(self.inner, batch, t_env, episode_num, *args, **kwargs)

    def save_models(self, path: str) -> None:
        self.inner.save_models(path)
        checkpoint.save(self.session, path)

    def load_models(self, path: str) -> None:
        checkpoint.load(self.session, path)
        self.inner.load_models(path)
