"""PNG figures of a comparison, drawn from the summary's plain data.

- ``aggregate.png``: each variant's IQM with its 95 % CI, and P(improvement) of each
  variant over the first with its CI (0.5 = no difference).
- ``curves.png``: sample-efficiency curves, the IQM over runs at every evaluation with
  its CI band, against environment frames.

:func:`plot_summary` draws both from a ``summary.json`` dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_aggregate(
    variants: Mapping[str, Mapping[str, Any]],
    prob_improvement: Mapping[str, Mapping[str, Any]],
    path: str | Path,
    *,
    title: str,
    score_label: str = "IQM of the run scores (episode reward)",
) -> Path:
    """IQM with CI per variant (left) and P(improvement over the first) with CI (right).

    Args:
        variants: ``{variant: {"iqm", "ci": [low, high], "runs"}}`` (variants without runs
            are left out).
        prob_improvement: ``{variant: {"value", "ci", "over"}}``; an entry with a ``"variant"``
            is drawn under that name (several comparisons of one variant).
        path: the PNG to write.
        title: the figure title.
        score_label: the x-axis label of the left panel.
    """
    plt = _pyplot()
    colors = {name: f"C{i}" for i, name in enumerate(variants)}
    shown = [(k, v) for k, v in variants.items() if v.get("runs")]
    panels = 2 if prob_improvement else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 1.2 + 0.6 * len(shown)), squeeze=False)
    rows = [(name, v["iqm"], v["ci"], colors[name], f"{name} ({v['runs']} runs)") for name, v in shown]
    _intervals(axes[0][0], rows, "o", score_label, "IQM with 95% stratified bootstrap CI")
    if prob_improvement:
        ax = axes[0][1]
        ax.axvline(0.5, color="grey", linestyle="--", linewidth=1, label="0.5: no difference")
        rows = [(f"{v}\nover {p['over']}", p["value"], p["ci"], colors.get(v, "C0"), f"P({v} > {p['over']})")
                for v, p in ((p.get("variant", name), p) for name, p in prob_improvement.items())]  # fmt: skip
        xlabel = "probability of improvement (a run beats a run of the first variant)"
        _intervals(ax, rows, "s", xlabel, "P(improvement) with 95% bootstrap CI")
        ax.set_xlim(-0.02, 1.02)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def _intervals(
    ax, rows: list[tuple[str, float, list[float], str, str]], marker: str, xlabel: str, title: str
):
    """One horizontal point-and-CI row per ``(tick, point, [low, high], colour, legend)``."""
    for y, (_, point, (low, high), color, label) in enumerate(rows):
        ax.errorbar(
            point, y, xerr=[[point - low], [high - point]], fmt=marker, capsize=5, color=color, label=label
        )
    ax.set_yticks(range(len(rows)), [row[0] for row in rows])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("variant")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best")


def plot_curves(
    curves: Mapping[str, Mapping[str, Any]],
    path: str | Path,
    *,
    title: str,
    ylabel: str = "IQM of the evaluation episode reward",
) -> Path:
    """IQM over runs at each evaluation with its CI band, one line per variant.

    Args:
        curves: ``{variant: {"frames": [...], "iqm": [...], "ci": [[low...], [high...]], "runs": n}}``.
        path: the PNG to write.
        title: the figure title.
        ylabel: the y-axis label.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, c) in enumerate(curves.items()):
        runs = f" ({c['runs']} runs)" if "runs" in c else ""
        ax.plot(c["frames"], c["iqm"], marker="o", markersize=3, color=f"C{i}", label=f"{name}{runs}")
        ax.fill_between(c["frames"], c["ci"][0], c["ci"][1], color=f"C{i}", alpha=0.2)
    ax.set_xlabel("environment frames")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(title="IQM, band: 95% CI", fontsize=8, title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_summary(summary: Mapping[str, Any], out: str | Path) -> list[Path]:
    """``aggregate.png`` and ``curves.png`` in ``out`` from a summary dict."""
    out = Path(out)
    metric = summary["metric"]
    task, share = summary.get("task") or "", metric["last_fraction"]
    what = metric.get("label", f"evaluation '{metric['key']}' (episode reward)")
    window = f" over the last {share:.0%} of training" if share else ""
    more = {f"{c['variant']}|{c['over']}": c for c in summary.get("comparisons", [])}
    paths = [
        plot_aggregate(
            summary["variants"],
            {**summary["prob_improvement"], **more},
            out / "aggregate.png",
            title=f"{task}: run score = mean {what}{window}",
            score_label=f"IQM of the run scores ({what})",
        )  # fmt: skip
    ]
    if summary.get("curves"):
        paths.append(
            plot_curves(
                summary["curves"],
                out / "curves.png",
                title=f"{task}: sample efficiency (IQM over runs at each point)",
                ylabel=f"IQM of {what}",
            )  # fmt: skip
        )
    return paths
