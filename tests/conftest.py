from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
# ../shared next to the checkout; a git worktree one level deeper (e.g. wt/<name>) finds it
# further up.
SHARED = next(
    (p / "shared" for p in REPO.parents if (p / "shared" / "oracles").is_dir()), REPO.parent / "shared"
)

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
        ],
    ),
]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture
def installed_toy_plugins(tmp_path, monkeypatch):
    """Install the test plugins the way pip does: a distribution's metadata with entry points
    in the ``hetplug`` group, found on sys.path (``toy``: rewards, losses, metrics;
    ``toy_replay``: a uniform prioritiser). Nothing in hetplug or its adapters names them."""
    dist = tmp_path / "site" / "hetplug_toy_plugins-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hetplug-toy-plugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[hetplug]\ntoy = tests.core.toy_plugin:ToyPlugin\ntoy_replay = tests.core.toy_plugin:ToyReplay\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return ("toy", "toy_replay")


def unlabelled(figure) -> list[str]:
    """What a figure lacks for a reader: per axes with data, an x and a y label and a title
    (its own or the figure's), and a legend when it draws several labelled series.
    Colour bars are judged by their label only."""
    problems = []
    suptitle = figure._suptitle.get_text() if getattr(figure, "_suptitle", None) is not None else ""
    for k, ax in enumerate(figure.axes):
        if not ax.get_visible() or not ax.axison:
            continue
        if hasattr(ax, "_colorbar"):
            if not (ax.get_ylabel() or ax.get_xlabel()):
                problems.append(f"axes {k}: colour bar without a label")
            continue
        if not (ax.lines or ax.collections or ax.images or ax.patches or ax.containers):
            continue
        if not ax.get_xlabel():
            problems.append(f"axes {k} ({ax.get_title()!r}): no x label")
        if not ax.get_ylabel():
            problems.append(f"axes {k} ({ax.get_title()!r}): no y label")
        if not (ax.get_title() or suptitle):
            problems.append(f"axes {k}: no title")
        handles, labels = ax.get_legend_handles_labels()
        if len(labels) > 1 and ax.get_legend() is None and figure.legends == []:
            problems.append(f"axes {k} ({ax.get_title()!r}): {len(labels)} labelled series, no legend")
    return problems


def _saved_by_this_project() -> bool:
    """Whether the first caller outside matplotlib is hetplug's code (not a library's)."""
    import sys

    frame = sys._getframe(2)
    while frame is not None and "matplotlib" in frame.f_code.co_filename:
        frame = frame.f_back
    if frame is None:
        return False
    path = Path(frame.f_code.co_filename).resolve()
    return REPO in path.parents and ".venv" not in path.parts and "tests" not in path.relative_to(REPO).parts


@pytest.fixture(autouse=True)
def figures_are_labelled(monkeypatch):
    """Every figure the code under test saves has labelled axes, a title and a legend."""
    try:
        from matplotlib.figure import Figure
    except ImportError:  # the core's tests need no matplotlib
        yield
        return
    original = Figure.savefig

    def savefig(self, fname, *args, **kwargs):
        if _saved_by_this_project():  # a host's own plots (PyMARLzoo+'s) are not ours to judge
            problems = unlabelled(self)
            assert not problems, f"figure {fname}: " + "; ".join(problems)
        return original(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    yield
