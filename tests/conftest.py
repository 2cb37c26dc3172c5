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
