"""Metrics: the plugins' results reach EPyMARL's logger under the names every host uses
(``hetplug/<method>/<name>``, :mod:`hetplug.metrics`), and PyMARLzoo+'s plots of them."""

from __future__ import annotations

import pytest

from hetplug.metrics import scalar_metrics


def test_logged_names_are_the_cores(runs):
    """Every hetplug stat the host logged is a name of hetplug.metrics.scalar_metrics over
    the plugins' latest values: no host-made names."""
    session, info = runs["qmix", "shep"]
    logged = {k for k in info if k.startswith("hetplug") and not k.endswith("_T")}
    assert logged == set(scalar_metrics(session.metrics)) == session.log.logged
    assert {"hetplug/shep/moran_i", "hetplug/shep/priority_mean", "hetplug/intrinsic_reward"} <= logged


@pytest.mark.slow
def test_pymarlzooplus_plots_the_hetplug_metrics(pymarlzoo, tmp_path):
    """PyMARLzoo+ saves one PNG per stat after each run (its run.py, after a 10 s wait for
    sacred's observer), in folders that names with "/" need: the adapter prepares them,
    and the run ends normally."""
    with pymarlzoo.inside(tmp_path, plots=True):
        session = pymarlzoo.run("qmix", ["per"], t_max=200, learner_log_interval=50)
    plots = pymarlzoo.run_dirs(tmp_path)[-1] / "plots"
    assert (plots / "loss.png").is_file()
    for name in session.log.logged:
        assert (plots / f"{name}.png").is_file(), sorted(p.name for p in plots.rglob("*.png"))
