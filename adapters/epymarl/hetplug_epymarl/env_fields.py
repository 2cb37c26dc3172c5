"""What EPyMARL's environments know and its episode batch lacks: agent positions (the named
extractors of ``positions: {extractor: <name>}``), per-agent alive masks and episode
success, read from the environment object at every step and carried to the batch that
``buffer.insert_episode_batch`` receives.

EPyMARL's runners step their environments (in this process, or in worker processes for
the parallel runner) and keep only obs, state, actions, rewards and termination. For a run
with the key, the adapter wraps (nothing of EPyMARL is copied):

* the env registry entry (``envs.REGISTRY[args.env]``) with :class:`RecordingFactory`, so
  every environment the runner builds, in a worker too, is a :class:`RecordingEnv`: after
  ``reset`` and after each ``step`` it reads the environment object (an :class:`Extractor`)
  and passes a record on, in this process directly, from a worker inside the step's
  ``info`` under :data:`KEY`;
* the runner class (:func:`recording_runner_class`): the parallel runner's pipes take
  :data:`KEY` out of each ``info`` before the runner sees it (its statistics sum the
  infos), and every train run's records are kept per batch row (:class:`Recorder`) for
  the insert that follows it (:meth:`Recorder.fields`).

Records: ``positions [N, D]``, ``opponent_positions [K, D]`` and ``opponent_alive [K]``
(with an extractor configured), ``alive [N]`` and ``success`` (where the environment
defines them). Success is ``info["battle_won"]`` where the environment reports it (SMAC,
SMACv2, SMAClite), else the extractor's rule (lbforaging: every food collected).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

#: the key under which a worker's records travel inside a step's ``info``
KEY = "__hetplug_env_fields__"

_INNER = ("_env", "env", "original_env", "aec_env", "unwrapped")  # how wrappers hold what they wrap


def inner_envs(env: Any, limit: int = 32) -> Iterator[Any]:
    """``env`` and everything it wraps (EPyMARL's wrappers, gymnasium's, PettingZoo's),
    breadth first, each object once."""
    seen, queue = set(), [env]
    while queue and len(seen) < limit:
        obj = queue.pop(0)
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        yield obj
        for name in _INNER:
            try:
                inner = getattr(obj, name, None)
            except Exception:  # a wrapper refusing a private attribute
                inner = None
            if inner is not None and not isinstance(inner, (str, int, float, bool)):
                queue.append(inner)


def _module(obj: Any) -> str:
    return type(obj).__module__ or ""


def _array(values, width: int = 2) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).reshape(-1, width)


# ---------------------------------------------------------------------- the environments
def _lbforaging_success(core) -> bool:
    return bool(np.asarray(core.field).sum() == 0)  # every food collected


def _smaclite_units(units: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``[n, 2]`` (NaN for a dead unit: SMAClite drops it) and alive ``[n]``."""
    pos = np.full((n, 2), np.nan, dtype=np.float32)
    alive = np.zeros(n, dtype=bool)
    for i, unit in units.items():
        pos[i] = unit.pos
        alive[i] = unit.hp > 0
    return pos, alive


@dataclass(frozen=True)
class Extractor:
    """How to read one kind of environment object (``core``, found by :meth:`finds` among
    :func:`inner_envs`).

    Attributes:
        name: the name of ``positions: {extractor: <name>}``.
        finds: whether an object is this environment's core.
        positions: ``core -> [N, D]`` agent positions (NaN: not reported now, e.g. dead).
        alive: ``core -> [N]`` bool, where agents can leave the game; else None.
        success: ``core -> bool`` episode success, where the task defines one; else None.
        opponents: ``core -> ([K, D], [K] alive)``, where the task has opponents; else None.
        coordinates: what the positions are (for the docs and error messages).
    """

    name: str
    finds: Callable[[Any], bool]
    positions: Callable[[Any], np.ndarray]
    alive: Callable[[Any], np.ndarray] | None = None
    success: Callable[[Any], bool] | None = None
    opponents: Callable[[Any], tuple[np.ndarray, np.ndarray]] | None = None
    coordinates: str = ""


EXTRACTORS: dict[str, Extractor] = {
    e.name: e
    for e in (
        Extractor(
            "lbforaging",
            lambda o: _module(o).startswith("lbforaging") and hasattr(o, "players") and hasattr(o, "field"),
            lambda core: _array([p.position for p in core.players]),
            success=_lbforaging_success,
            coordinates="grid (row, col) of each player, 0 .. field size - 1",
        ),
        Extractor(
            "rware",
            lambda o: _module(o).startswith("rware") and hasattr(o, "agents") and hasattr(o, "grid_size"),
            lambda core: _array([(a.x, a.y) for a in core.agents]),
            coordinates="grid (x, y) of each robot, x < grid width, y < grid height",
        ),
        Extractor(
            "smaclite",
            lambda o: _module(o).startswith("smaclite") and hasattr(o, "agents") and hasattr(o, "enemies"),
            lambda core: _smaclite_units(core.agents, core.n_agents)[0],
            alive=lambda core: _smaclite_units(core.agents, core.n_agents)[1],
            opponents=lambda core: _smaclite_units(core.enemies, core.n_enemies),
            coordinates="map (x, y) of each allied unit, 0 .. map width / height",
        ),
        Extractor(
            "mpe",
            lambda o: "mpe" in _module(o) and hasattr(getattr(o, "world", None), "agents"),
            lambda core: _array([a.state.p_pos for a in core.world.agents]),
            coordinates="world (x, y) of each agent (landmarks spawn in [-1, 1])",
        ),
    )
}


def find(env: Any, name: str | None = None) -> tuple[Extractor, Any] | None:
    """The extractor ``name`` (any known one when None) and the core object it reads in
    ``env``'s wrapper chain, or None."""
    wanted = list(EXTRACTORS.values()) if name is None else [EXTRACTORS[name]]
    for obj in inner_envs(env):
        for extractor in wanted:
            try:
                if extractor.finds(obj):
                    return extractor, obj
            except Exception:
                continue
    return None


# ---------------------------------------------------------------------- the environment side
class RecordingEnv:
    """The host's environment, recording what :mod:`~hetplug_epymarl.env_fields` carries.

    Every attribute is the wrapped environment's. ``sink``: a callable that takes this
    environment's records (set when it lives in the runner's own process); without it the
    records ride in the step's ``info`` under :data:`KEY`.
    """

    def __init__(self, env: Any, positions: str | None = None, opponents: str | None = None) -> None:
        self.__dict__.update(
            _hetplug_env=env, _positions=positions, _opponents=opponents, sink=None,
            _pending=[], _last={}, _found=None,
        )  # fmt: skip

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_hetplug_env"], name)

    # -- the readers, found once (the objects live as long as the environment)
    def _readers(self) -> dict[str, tuple[Extractor, Any] | None]:
        if self._found is None:
            env = self._hetplug_env
            found = {"auto": find(env)}
            for role in ("_positions", "_opponents"):
                name = getattr(self, role)
                found[role] = None if name is None else find(env, name)
            self.__dict__["_found"] = found
        return self._found

    def report(self) -> dict[str, Any]:
        """What this environment can supply, for the checks before training."""
        found = self._readers()
        auto = found["auto"]
        return {
            "env": type(self._hetplug_env).__name__,
            "found": None if auto is None else auto[0].name,
            "alive": auto is not None and auto[0].alive is not None,
            "success": auto is not None and auto[0].success is not None,
            "positions": (self._positions, found["_positions"] is not None),
            "opponents": (self._opponents, found["_opponents"] is not None),
        }

    def _record(self, info: Any) -> dict[str, Any]:
        found = self._readers()
        record: dict[str, Any] = {}
        if found["_positions"] is not None:
            extractor, core = found["_positions"]
            record["positions"] = self._keep_last("positions", extractor.positions(core))
        if found["_opponents"] is not None and found["_opponents"][0].opponents is not None:
            extractor, core = found["_opponents"]
            pos, alive = extractor.opponents(core)
            record["opponent_positions"] = self._keep_last("opponent_positions", pos)
            record["opponent_alive"] = alive
        auto = found["auto"]
        if auto is not None and auto[0].alive is not None:
            record["alive"] = auto[0].alive(auto[1])
        if isinstance(info, dict) and "battle_won" in info:  # SMAC, SMACv2, SMAClite
            record["success"] = bool(info["battle_won"])
        elif auto is not None and auto[0].success is not None:
            record["success"] = auto[0].success(auto[1])
        return record

    def _keep_last(self, name: str, value: np.ndarray) -> np.ndarray:
        """A position the environment no longer reports (a dead unit) keeps its last value."""
        value = np.array(value, dtype=np.float32)
        last = self._last.get(name)
        gone = np.isnan(value)
        if gone.any():
            value[gone] = 0.0 if last is None or last.shape != value.shape else last[gone]
        self._last[name] = value
        return value

    def _deliver(self, records: list) -> list | None:
        if self.sink is not None:
            self.sink(records)
            return None
        return records

    def reset(self, *args: Any, **kwargs: Any):
        out = self._hetplug_env.reset(*args, **kwargs)
        self.__dict__["_last"] = {}
        if self.sink is not None:
            self.sink(None)  # a new episode
        self.__dict__["_pending"] = [self._record(None)]  # step 0, sent with the first step
        return out

    def step(self, actions: Any):
        out = self._hetplug_env.step(actions)
        info = out[
            -1
        ]  # EPyMARL: (obs, reward, terminated, truncated, info); PyMARLzoo+: (reward, terminated, info)
        records = [*self._pending, self._record(info)]
        self.__dict__["_pending"] = []
        records = self._deliver(records)
        if records is None:
            return out
        return (*out[:-1], {**(info if isinstance(info, dict) else {}), KEY: records})

    def get_env_info(self) -> dict[str, Any]:
        return {**self._hetplug_env.get_env_info(), KEY: self.report()}


@dataclass(frozen=True)
class RecordingFactory:
    """An env registry entry whose environments are :class:`RecordingEnv` (picklable: the
    parallel runner sends it to its workers)."""

    factory: Callable[..., Any]
    positions: str | None = None
    opponents: str | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> RecordingEnv:
        return RecordingEnv(self.factory(*args, **kwargs), self.positions, self.opponents)


# ---------------------------------------------------------------------- the runner side
class Recorder:
    """Records per batch row of the runner's latest train run.

    Attributes:
        positions, opponents: the configured extractor names (or None).
        report: what the environment said it can supply (``RecordingEnv.report``).
    """

    def __init__(self, positions: str | None = None, opponents: str | None = None) -> None:
        self.positions, self.opponents = positions, opponents
        self.rows: dict[int, list[dict[str, Any]]] = {}
        self.last_run: list[list[dict[str, Any]]] | None = None
        self.report: dict[str, Any] | None = None

    def wrap(self, env: Any) -> RecordingEnv:
        """``env`` recording for this run (an episode runner's own environment)."""
        return RecordingEnv(env, self.positions, self.opponents)

    def factory(self, entry: Callable[..., Any]) -> RecordingFactory:
        """The env registry ``entry`` whose environments record for this run."""
        return RecordingFactory(entry, self.positions, self.opponents)

    def sink(self, row: int) -> Callable[[list | None], None]:
        def take(records: list | None) -> None:
            if records is None:
                self.reset(row)
            else:
                self.add(row, records)

        return take

    def reset(self, row: int) -> None:
        self.rows[row] = []

    def add(self, row: int, records: list) -> None:
        self.rows.setdefault(row, []).extend(records)

    def finish_run(self, batch_size: int) -> None:
        """A train run ended: its rows are what the next insert receives."""
        self.last_run = [self.rows.get(b, []) for b in range(batch_size)]

    def check(self, report: dict[str, Any] | None) -> None:
        """Before training: the configured extractors found their environment."""
        self.report = report
        for role in ("positions", "opponents"):
            name = getattr(self, role)
            if name is None:
                continue
            found = report is not None and report[role][1]
            if not found:
                where = "no environment report" if report is None else f"environment {report['env']!r}"
                raise ValueError(
                    f"hetplug.{role}.extractor={name!r}: {where} holds no {name} environment "
                    f"(recognised: {None if report is None else report['found']!r})"
                )

    def fields(self, ep_batch, n_agents: int, device: torch.device | str) -> dict[str, torch.Tensor]:
        """The recorded fields of the episodes in ``ep_batch`` (the latest train run's):
        ``positions [B, T, N, D]``, ``alive [B, T, N]``, ``success [B]``, ``opponent_*``.
        Steps after an episode's end repeat its last record (they are masked)."""
        rows, self.last_run = self.last_run, None
        if rows is None or len(rows) != ep_batch.batch_size:
            return {}
        filled = ep_batch["filled"].squeeze(-1).sum(1).tolist()
        T = ep_batch.max_seq_length
        for b, (records, length) in enumerate(zip(rows, filled, strict=True)):
            if len(records) != int(length):
                raise RuntimeError(
                    f"hetplug: episode {b} of the batch has {int(length)} filled steps but the "
                    f"environment recorded {len(records)} (a runner this adapter does not know?)"
                )
        steps = [k for k in ("positions", "alive", "opponent_positions", "opponent_alive")
                 if all(k in r for records in rows for r in records)]  # fmt: skip
        out: dict[str, torch.Tensor] = {}
        for name in steps:
            per_row = []
            for records in rows:
                values = [np.asarray(r[name]) for r in records]
                values += [values[-1]] * (T - len(values))
                per_row.append(np.stack(values))
            value = torch.as_tensor(np.stack(per_row), device=device)
            out[name] = value.bool() if name.endswith("alive") else value.float()
        if all(records and "success" in records[-1] for records in rows):  # the episode's end
            out["success"] = torch.tensor([bool(r[-1]["success"]) for r in rows], device=device)
        if "positions" in out and out["positions"].shape[2] != n_agents:
            raise ValueError(
                f"hetplug.positions.extractor={self.positions!r} read {out['positions'].shape[2]} "
                f"agents but the run has n_agents={n_agents}"
            )
        return out


class RecordingConnection:
    """One pipe of the parallel runner: takes this environment's records out of each step's
    ``info`` (and notes each reset) before the runner sees them."""

    def __init__(self, conn: Any, row: int, recorder: Recorder) -> None:
        self.conn, self.row, self.recorder = conn, row, recorder

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    def send(self, message: Any) -> None:
        if isinstance(message, tuple) and message and message[0] == "reset":
            self.recorder.reset(self.row)
        self.conn.send(message)

    def recv(self) -> Any:
        data = self.conn.recv()
        info = data.get("info") if isinstance(data, dict) else None
        if isinstance(info, dict) and KEY in info:
            self.recorder.add(self.row, info.pop(KEY))
        return data


def recording_runner_class(base: type, recorder: Recorder, make_env: Callable[[Any], RecordingEnv]) -> type:
    """A subclass of the host's runner that keeps each train run's records in ``recorder``.

    The episode runner's environment is in this process: it gets a sink. The parallel
    runner's are in workers (built by the wrapped registry entry): its pipes are wrapped.
    """

    class HetplugRecordingRunner(base):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if hasattr(self, "parent_conns"):
                self.parent_conns = tuple(
                    RecordingConnection(c, i, recorder) for i, c in enumerate(self.parent_conns)
                )
            else:
                env = self.env if isinstance(self.env, RecordingEnv) else make_env(self.env)
                env.sink = recorder.sink(0)
                self.env = env

        def get_env_info(self):
            info = dict(super().get_env_info())
            recorder.check(info.pop(KEY, None))
            return info

        def run(self, test_mode: bool = False, *args: Any, **kwargs: Any):
            out = super().run(test_mode, *args, **kwargs)
            if not test_mode:
                recorder.finish_run(self.batch_size)
            return out

    return HetplugRecordingRunner
