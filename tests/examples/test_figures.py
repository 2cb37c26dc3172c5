"""The check every saved figure of the suite goes through (tests/conftest.py) can fail."""

from __future__ import annotations

import pytest

plt = pytest.importorskip("matplotlib.pyplot")

from tests.conftest import unlabelled  # noqa: E402


def test_a_figure_without_labels_title_or_legend_is_caught():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="iql")
    ax.plot([0, 1], [1, 0], label="iql+shep")
    assert len(unlabelled(fig)) == 4  # x label, y label, title, legend
    ax.set_xlabel("environment frames")
    ax.set_ylabel("mean episode reward")
    ax.set_title("IQL on navigation")
    ax.legend()
    assert unlabelled(fig) == []
    plt.close(fig)


def test_a_colour_bar_needs_a_label():
    fig, ax = plt.subplots()
    image = ax.imshow([[0.0, 1.0], [1.0, 0.0]])
    ax.set_xlabel("agent")
    ax.set_ylabel("agent")
    ax.set_title("distances")
    bar = fig.colorbar(image)
    assert unlabelled(fig) == ["axes 1: colour bar without a label"]
    bar.set_label("W2 distance")
    assert unlabelled(fig) == []
    plt.close(fig)
