"""Fixtures for the EPyMARL adapter's tests.

The host is PyMARLzoo+ (``pymarlzooplus`` on PyPI, EPyMARL's tree under a package name),
run in-process on lbforaging with shrunk configs. Tests that use a host fixture are
skipped when it is not installed; the real-EPyMARL tests (``test_real_epymarl.py``) use
none of these fixtures.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import time
import types
from pathlib import Path

import pytest

import hetplug_epymarl

from .cases import HETDPS, KEY, KEY3, ON_POLICY, shep


class PyMARLzooHost:
    """PyMARLzoo+ with hetplug installed, and what the tests do with it."""

    def __init__(self, prun, entry) -> None:
        self.prun = prun  # pymarlzooplus.run
        self.entry = entry  # pymarlzooplus.pymarlzooplus, its Python entry point

    @contextlib.contextmanager
    def inside(self, root: Path, plots: bool = False):
        """hetplug installed, and ``root`` the working directory: its sacred observer writes
        ``results/`` there. Unless ``plots``, the host's plotting after each run is skipped,
        and so is the 10 s wait before it (for sacred's observer to write info.json)."""
        hetplug_epymarl.install("pymarlzooplus")
        mp = pytest.MonkeyPatch()
        if not plots:
            mp.setattr(self.prun, "time", types.SimpleNamespace(time=time.time, sleep=lambda s: None))
            mp.setattr(self.prun, "plot_single_experiment_results", lambda *a, **k: None)
        mp.chdir(root)
        try:
            yield root
        finally:
            mp.undo()

    def run(
        self, config: str = "qmix", hetplug=None, t_max: int = 400, seed: int = 1, key: str = KEY, **algo
    ):
        """A short run (``algo`` overrides the algorithm's settings); returns its session."""
        algo_args = {
            "t_max": t_max,
            "batch_size": 4,
            "buffer_size": 16,
            "test_interval": 10**6,
            "test_nepisode": 1,
            "log_interval": 200,
            "learner_log_interval": 200,
            "runner_log_interval": 200,
            "save_model": False,
            **algo,
        }
        if hetplug is not None:
            algo_args["hetplug"] = hetplug
        self.entry(
            {
                "config": config,
                "env-config": "gymma",
                "env_args": {"key": key, "time_limit": 50, "seed": seed},
                "algo_args": algo_args,
            }
        )
        return hetplug_epymarl.last_session()

    def fails(self, capfd, message: str, *args, **kwargs) -> str:
        """Run expecting a failure; sacred prints the error and exits with 1."""
        capfd.readouterr()
        with pytest.raises(SystemExit) as exc:
            self.run(*args, **kwargs)
        assert exc.value.code == 1
        out = capfd.readouterr()
        text = out.out + out.err
        assert re.search(message, text), text[-3000:]
        assert "Beginning training" not in text
        return text

    @staticmethod
    def run_dirs(root: Path) -> list[Path]:
        """Sacred's run folders in ``root``, the latest finished last (the folders of
        different configs are numbered alike: ``results/sacred/<name>/<map>/1``)."""
        infos = sorted(root.glob("results/sacred/**/info.json"), key=lambda p: p.stat().st_mtime_ns)
        return [p.parent for p in infos]

    def info(self, root: Path) -> dict:
        """The host's logged stats (sacred's info.json) of the latest run in ``root``."""
        return json.loads((self.run_dirs(root)[-1] / "info.json").read_text())

    def running_mean_std(self, shape):
        from pymarlzooplus.components.standarize_stream import RunningMeanStd

        return RunningMeanStd(shape=shape, device="cpu")


@pytest.fixture(scope="session")
def pymarlzoo() -> PyMARLzooHost:
    prun = pytest.importorskip("pymarlzooplus.run", reason="the test extra installs pymarlzooplus (README)")
    from pymarlzooplus import pymarlzooplus

    return PyMARLzooHost(prun, pymarlzooplus)


@pytest.fixture
def host(pymarlzoo, tmp_path) -> PyMARLzooHost:
    """The host for one test, working in its ``tmp_path``."""
    with pymarlzoo.inside(tmp_path):
        yield pymarlzoo


# ---------------------------------------------------------------------- runs shared by modules
CASES = [
    ("qmix", "per"),
    ("vdn", "shep"),
    ("iql", "per"),
    ("qmix", "shep"),
    ("mappo", "shep"),
    ("ippo", "per"),
]


@pytest.fixture(scope="package")
def runs(pymarlzoo, tmp_path_factory) -> dict:
    """One short run per (algorithm, plugin): QMIX+PER, VDN+SHEP, IQL+PER, QMIX+SHEP, ...
    ``{(config, plugin): (session, info.json)}``."""
    out = {}
    with pymarlzoo.inside(tmp_path_factory.mktemp("runs")) as root:
        for config, plugin in CASES:
            hp = shep() if plugin == "shep" else {"plugins": [plugin]}
            session = pymarlzoo.run(config, hp, **ON_POLICY.get(config, {}))
            out[config, plugin] = (session, pymarlzoo.info(root))
    return out


@pytest.fixture(scope="package")
def lbs_run(pymarlzoo, tmp_path_factory):
    """IQL with one network per agent (iql_ns) and LBS: ``(session, info.json)``."""
    with pymarlzoo.inside(tmp_path_factory.mktemp("lbs")) as root:
        session = pymarlzoo.run("iql_ns", ["lbs"])
        return session, pymarlzoo.info(root)


@pytest.fixture(scope="package")
def hetdps_runs(pymarlzoo, tmp_path_factory) -> dict:
    """QMIX and MAPPO with HetDPS on three agents, regrouping every 2 updates, and QMIX with
    the feed-forward agent (``use_rnn: False``, as EPyMARL's stock qmix.yaml sets it)
    grouping on two distances (meta-transition and observation, from EPyMARL's state)."""
    out = {}
    hp = {"plugins": ["hetdps"], "hetdps": HETDPS}
    with pymarlzoo.inside(tmp_path_factory.mktemp("hetdps")):
        for config in ("qmix", "mappo"):
            out[config] = pymarlzoo.run(config, hp, key=KEY3, **ON_POLICY.get(config, {}))
        # ... grouping on the meta-transition and the (model-based) observation distances
        grouping = {"grouping_distance": {"meta": 1.0, "observation": 0.5}}
        hp = {"plugins": ["hetdps"], "hetdps": {**HETDPS, **grouping}}
        out["qmix_feed_forward"] = pymarlzoo.run("qmix", hp, key=KEY3, use_rnn=False)
    return out


@pytest.fixture(scope="package")
def shppo_run(pymarlzoo, tmp_path_factory):
    """MAPPO with SHPPO (latent_dim 2) on three agents, models saved: ``(session, info, root)``."""
    with pymarlzoo.inside(tmp_path_factory.mktemp("shppo")) as root:
        hp = {"plugins": ["shppo"], "shppo": {"latent_dim": 2}}
        session = pymarlzoo.run("mappo", hp, key=KEY3, save_model=True, **ON_POLICY["mappo"])
        return session, pymarlzoo.info(root), root


# ---------------------------------------------------------------------- learners
def _copies(session):
    inner = session.learner.inner
    for name in ("mac", "target_mac", "old_mac"):  # drop hidden states that hold a graph
        if hasattr(inner, name):
            getattr(inner, name).init_hidden(1)
    logger, inner.logger = inner.logger, types.SimpleNamespace(log_stat=lambda *a, **k: None)
    owner, inner.mac.learner = inner.mac.learner, None  # run.py sets mac.learner = learner
    try:
        return copy.deepcopy(inner), copy.deepcopy(inner)
    finally:
        inner.logger, inner.mac.learner = logger, owner


@pytest.fixture
def learner_copies():
    """``learner_copies(session)``: two deep copies of the run's host learner (silent logger)."""
    return _copies


@pytest.fixture
def twin_learners(pymarlzoo):
    """``twin_learners(session, variant)``: two copies of the run's host learner set up alike
    for an oracle comparison: a hard target update every 2 updates, and return
    standardisation for the ``standardise_returns`` variant."""

    def twins(session, variant: str):
        host, mine = _copies(session)
        for learner in (host, mine):
            learner.args.target_update_interval_or_tau = 2
            learner.args.standardise_returns = variant == "standardise_returns"
            if variant == "standardise_returns":
                learner.ret_ms = pymarlzoo.running_mean_std((learner.n_agents,))
        return host, mine

    return twins
