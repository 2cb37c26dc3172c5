"""Ray execution: one Ray task per run, results back to the driver, failures retried once.

:func:`connect` starts a local Ray with ``workers`` CPUs, or joins a cluster at
``address``; :func:`run_tasks` runs any picklable module-level function over a set of
labelled arguments, each as a Ray task with its resource request (1 CPU, plus a GPU fraction
when asked). The driver receives each result as it finishes and hands it to
``on_result`` (which writes it), so every finished run is kept even if the driver is
interrupted later. Nothing here knows BenchMARL.

Example:
    >>> engine = Engine(workers=2)
    >>> started = connect(engine)
    >>> report = run_tasks(math.sqrt, {"a": 4.0, "b": 9.0}, engine, on_result=lambda k, r: f"= {r}")
    >>> shutdown(started)
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class EngineError(RuntimeError):
    """Ray missing, not startable or not reachable (a one-line message, before any run)."""


@dataclass(frozen=True)
class Engine:
    """How runs are executed."""

    workers: int = 2
    """runs at the same time (a local Ray gets this many CPUs; with ``address``, the most
    tasks in flight)"""
    address: str | None = None
    """an existing Ray cluster (``host:port``, ``ray://host:port`` or ``auto``); None starts a
    local Ray"""
    gpus_per_run: float = 0.0
    """GPU fraction each run requests (0: CPU runs)"""
    retries: int = 1
    """a failed run is run again this many times"""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise EngineError(f"--workers must be >= 1, got {self.workers}")
        if not 0 <= self.gpus_per_run <= 1:
            raise EngineError(f"--gpus-per-run must be in [0, 1], got {self.gpus_per_run}")

    def info(self) -> dict[str, Any]:
        """The summary's ``engine`` entry."""
        return {"name": "ray", "address": self.address, "workers": self.workers}


@dataclass
class Report:
    """What :func:`run_tasks` did."""

    finished: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """label -> the last error, one line"""
    seconds: float = 0.0


def _ray():
    try:
        import ray
    except ImportError as err:
        raise EngineError(
            f'hetplug compare runs on Ray ({err}): pip install -c constraints.txt -e ".[compare]" from the clone'
        ) from None
    return ray


def check_address(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a ``host:port`` nobody listens on (Ray itself retries for a minute).

    Raises:
        EngineError: the address does not parse or does not accept a connection.
    """
    if address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise EngineError(f"--address {address!r}: expected host:port, ray://host:port or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise EngineError(
            f"--address {address}: cannot reach a Ray cluster there ({err.strerror or err})"
        ) from None


def connect(engine: Engine, need_gpu: bool = False) -> bool:
    """Start a local Ray or join ``engine.address``; reuse a Ray already initialised here.

    Returns:
        Whether this call started Ray (pass it to :func:`shutdown`).

    Raises:
        EngineError: one line, when Ray is missing, the cluster is unreachable or has no GPU
            while runs need one.
    """
    ray = _ray()
    if engine.address is not None:
        check_address(engine.address)
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
        if engine.address is None:
            # "local": a new Ray even when a `ray start` cluster (or its leftover address file) is here
            kwargs.update(address="local", num_cpus=engine.workers, include_dashboard=False)
        try:
            ray.init(**{"address": engine.address, **kwargs})
        except Exception as err:  # Ray raises ConnectionError, RuntimeError, ValueError...
            where = f"join the Ray cluster at {engine.address}" if engine.address else "start a local Ray"
            root = err
            while root.__cause__ is not None:  # Ray wraps the reason (e.g. an auth token error)
                root = root.__cause__
            why = _first_line(err) + (f" ({_first_line(root)})" if root is not err else "")
            raise EngineError(f"could not {where}: {why}") from None
        started = True
    if need_gpu and not ray.cluster_resources().get("GPU"):
        shutdown(started)
        raise EngineError("--device cuda: the Ray cluster has no GPU")
    return started


def shutdown(started: bool) -> None:
    """Stop Ray if :func:`connect` started it."""
    if started:
        _ray().shutdown()


def _first_line(err: BaseException) -> str:
    cause = getattr(err, "cause", None) or err  # a RayTaskError carries the worker's exception
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}".rstrip(": ")


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def run_tasks(
    func: Callable[[Any], Any],
    jobs: Mapping[str, Any],
    engine: Engine,
    *,
    on_result: Callable[[str, Any], str | None] | None = None,
    on_error: Callable[[str, str, bool], None] | None = None,
    log: Callable[[str], None] = print,
) -> Report:
    """Run ``func(arg)`` for every ``label: arg`` of ``jobs`` as Ray tasks (Ray must be
    connected, see :func:`connect`).

    Args:
        func: a module-level function (Ray pickles it by reference).
        jobs: ``{label: argument}``; labels name the runs in the progress lines.
        engine: resources per task, concurrency and retries.
        on_result: called in the driver with each result as it arrives; what it returns is
            added to the run's progress line.
        on_error: called with ``(label, error text with the worker's traceback, final)`` for
            every failed attempt.
        log: where progress lines go: ``[k/n] label: done in 12 s (...) | elapsed, ETA``.

    Returns:
        The finished labels and the failed ones with their last error.
    """
    ray = _ray()
    remote = ray.remote(func).options(num_cpus=1, num_gpus=engine.gpus_per_run, max_retries=0)
    queue = list(jobs)
    attempts = dict.fromkeys(jobs, 0)
    pending: dict[Any, tuple[str, float]] = {}
    report = Report()
    start = time.perf_counter()

    def submit() -> None:
        while queue and len(pending) < engine.workers:
            label = queue.pop(0)
            attempts[label] += 1
            pending[remote.remote(jobs[label])] = (label, time.perf_counter())

    def progress(label: str, text: str) -> None:
        done = len(report.finished) + len(report.failed)
        elapsed = time.perf_counter() - start
        eta = elapsed / done * (len(jobs) - done) if done else 0.0
        log(f"[{done}/{len(jobs)}] {label}: {text} | {_clock(elapsed)} elapsed, ETA {_clock(eta)}")

    submit()
    try:
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            label, began = pending.pop(ref)
            try:
                result = ray.get(ref)
            except Exception as err:  # the run raised, or its worker died
                final = attempts[label] > engine.retries
                if on_error is not None:
                    on_error(label, re.sub(r"\x1b\[[0-9;]*m", "", str(err)), final)  # Ray colours it
                if final:
                    report.failed[label] = _first_line(err)
                    progress(label, f"FAILED after {attempts[label]} attempts ({report.failed[label]})")
                else:
                    queue.insert(0, label)
                    log(f"[retry] {label}: failed ({_first_line(err)}); running it again")
            else:
                report.finished.append(label)
                extra = on_result(label, result) if on_result is not None else None
                progress(
                    label, f"done in {time.perf_counter() - began:.0f} s" + (f" ({extra})" if extra else "")
                )
            submit()
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    report.seconds = time.perf_counter() - start
    return report
