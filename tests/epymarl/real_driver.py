"""Runs a real EPyMARL checkout's own ``src/main.py`` in this process with hetplug
installed, and saves what the real-EPyMARL tests inspect (they start it in a subprocess):

    python real_driver.py SRC OUT.pt <main.py arguments>

OUT.pt holds ``{"batches": [...], "truth": [...], "facts": {...}}``:

* ``batches``: every TrajectoryBatch hetplug's collection wiring built (the plugins' view
  of the inserted episodes), on the CPU;
* ``truth``: per train episode of an in-process environment (the episode runner), what the
  environment object says after the reset and after each step, read here without
  hetplug's extractors: agent positions, alive, opponents, success, and the observations
  (to match episodes);
* ``facts``: the session after the run (the reward statistic's shape, the IS exponent).

EPyMARL's code is imported and run as it is; nothing of it is copied.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np
import torch

TRUTH: list[list[dict]] = []
MODE = {"test": False}


def raw_env(env):
    """The environment object behind EPyMARL's wrapper (its own attribute names)."""
    if hasattr(env, "_env"):  # GymmaWrapper: gymnasium env (lbforaging, rware, PettingZoo)
        raw = env._env.unwrapped
        if hasattr(raw, "_env"):  # EPyMARL's PettingZooWrapper around a parallel env
            raw = raw._env.unwrapped
        return raw
    return env.env.unwrapped  # SMACliteWrapper


def truth_of(raw, info) -> dict:
    """What the environment object says now: agent positions (NaN: a dead unit), alive and
    opponents where it has them, success where the task defines it."""
    module = type(raw).__module__
    out: dict = {}
    if module.startswith("lbforaging"):
        out["positions"] = np.array([p.position for p in raw.players], dtype=np.float32)
        out["success"] = bool(raw.field.sum() == 0)
    elif module.startswith("rware"):
        out["positions"] = np.array([(a.x, a.y) for a in raw.agents], dtype=np.float32)
    elif module.startswith("smaclite"):
        for name, units, n in (("", raw.agents, raw.n_agents), ("opponent_", raw.enemies, raw.n_enemies)):
            pos = np.full((n, 2), np.nan, dtype=np.float32)
            for i, unit in units.items():
                pos[i] = unit.pos
            out[f"{name}positions"] = pos
            out[f"{name}alive"] = np.array([i in units for i in range(n)])
        if info is not None:
            out["success"] = bool(info["battle_won"])
    else:  # PettingZoo MPE
        out["positions"] = np.array([a.state.p_pos for a in raw.world.agents], dtype=np.float32)
    return out


class TruthSpy:
    """The host's environment, noting the truth of every train episode in ``episodes``
    (``mode["test"]``: the runner is testing; ``env``: what hetplug's wrapper finds behind
    it). Works in the runner's own process (the episode runner)."""

    def __init__(self, env, episodes: list | None = None, mode: dict | None = None) -> None:
        self.env = env
        self.episodes = TRUTH if episodes is None else episodes
        self.mode = MODE if mode is None else mode

    def __getattr__(self, name):
        return getattr(self.__dict__["env"], name)

    def _note(self, info) -> None:
        if not self.mode["test"]:
            obs = np.stack(self.env.get_obs())
            self.episodes[-1].append({**truth_of(raw_env(self.env), info), "obs": obs})

    def reset(self, *args, **kwargs):
        out = self.env.reset(*args, **kwargs)
        if not self.mode["test"]:
            self.episodes.append([])
        self._note(None)
        return out

    def step(self, actions):
        out = self.env.step(actions)
        self._note(out[-1])
        return out


def spy_on(env_registry: dict, runner_registry: dict, episodes: list, mode: dict, patch) -> list:
    """Note every train episode's truth (:class:`TruthSpy` behind each env registry entry;
    the runners' ``run`` says when it tests) and keep every TrajectoryBatch the collection
    wiring builds; ``patch(owner, name, value)`` sets an attribute or an item. Returns
    the list the batches go to."""
    from hetplug_epymarl.wiring.shep import Collection

    for key, entry in list(env_registry.items()):
        patch(env_registry, key, lambda *a, _entry=entry, **k: TruthSpy(_entry(*a, **k), episodes, mode))
    for runner in set(runner_registry.values()):

        def marked(self, test_mode=False, *a, _run=runner.run, **k):
            mode["test"] = test_mode
            try:
                return _run(self, test_mode, *a, **k)
            finally:
                mode["test"] = False

        patch(runner, "run", marked)
    batches: list = []

    def keep(self, ep_batch, _built=Collection.trajectory_batch):
        tb = _built(self, ep_batch)
        batches.append({k: v.detach().cpu() for k, v in tb.tensors().items()})
        return tb

    patch(Collection, "trajectory_batch", keep)
    return batches


def _set(owner, name, value) -> None:
    if isinstance(owner, dict):
        owner[name] = value
    else:
        setattr(owner, name, value)


def main(src: str, out: str, argv: list[str]) -> None:
    sys.path.insert(0, src)
    import envs
    import runners

    import hetplug_epymarl

    batches = spy_on(envs.REGISTRY, runners.REGISTRY, TRUTH, MODE, _set)
    hetplug_epymarl.install("epymarl")
    sys.argv = [str(Path(src) / "main.py"), *argv]
    runpy.run_path(sys.argv[0], run_name="__main__")
    session = hetplug_epymarl.last_session()
    facts: dict = {"updates": session.updates}
    inner = session.learner.inner if session.learner is not None else None
    if inner is not None and hasattr(inner, "rew_ms"):
        facts["rew_ms_shape"] = tuple(inner.rew_ms.mean.shape)
    for name in session.config.plugins:
        sampler = getattr(session.pm.get_plugin(name), "sampler", None)
        if sampler is not None:
            facts["is_beta"] = float(sampler.beta)
    torch.save({"batches": batches, "truth": [e for e in TRUTH if e], "facts": facts}, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
