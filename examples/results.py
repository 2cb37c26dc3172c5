"""The experiments behind docs/results.md, and the page itself.

    python examples/results.py run                     # every experiment (resumable: rerun to finish)
    python examples/results.py run --only shep-navigation --workers 2
    python examples/results.py page                    # docs/results.md from docs/results/*/summary.json

Each experiment is a ``hetplug compare`` grid (or, for LBS on Pursuit and SHPPO's team-size
transfer, runs scored the same way), with at least 5 seeds per variant. Runs go to
``results/<name>/`` (not committed); each finished experiment's ``summary.json`` and plots
are copied to ``docs/results/<name>/`` and the page is written from those files only: no
number on it is typed by hand. Results are reported as they come out, never tuned per seed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "results"
RUNS = ROOT / "results"


@dataclass(frozen=True)
class Experiment:
    """One reduced-scale test of one paper's claim."""

    name: str
    method: str
    claim: str
    """what the paper claims, in a sentence, with its setting"""
    scale: str
    """how this experiment departs from the paper's setting, and why"""
    argv: tuple[str, ...]
    """the ``hetplug compare`` arguments (without --out)"""
    seeds: int = 5

    @property
    def command(self) -> str:
        return " ".join(
            ["hetplug", "compare", *self.argv, "--seeds", str(self.seeds), "--out", f"results/{self.name}"]
        )


EXPERIMENTS = [
    Experiment(
        name="shep-battle",
        method="SHEP",
        claim=(
            "SHEP's heterogeneity-driven priorities, intrinsic reward and Group-HER speed up learning and raise the "
            "final win rate of the base algorithm in large-scale battles (MAgent, SMAC 27m_vs_30m)."
        ),
        scale=(
            "SHEP's own setting, reduced: MAgent2 battle 30 v 30 on a 30 x 30 map against a fixed greedy team "
            "(hetplug's magent/battle), IQL, 30k frames per run instead of millions, 20k frames of replay; SHEP with "
            "its defaults (Algorithm 1), positions and opponents from the grid world, its grid over the map."
        ),
        argv=(
            "--task",
            "magent/battle",
            "--algorithm",
            "iql",
            "--plugins",
            "none",
            "shep",
            "--frames",
            "30000",
            "--envs",
            "10",
            "--updates",
            "50",
            "--memory",
            "20000",
            "--eval-every",
            "5",
            "--set",
            "positions.key=position",
            "--set",
            "opponents.group=blue",
            "--set",
            "opponents.key=position",
            "--set",
            "shep.grid_low=[0,0]",
            "--set",
            "shep.grid_high=[30,30]",
        ),  # fmt: skip
    ),
    Experiment(
        name="shep-navigation",
        method="SHEP",
        claim=(
            "SHEP's heterogeneity-driven priorities, intrinsic reward and Group-HER speed up learning and raise the "
            "final win rate of the base algorithm in large-scale battles (MAgent, SMAC 27m_vs_30m)."
        ),
        scale=(
            "Outside SHEP's domain on purpose: vmas/navigation (3 agents, dense reward, no opponents, cohesion beside "
            "the point), IQL, 60k frames per run instead of millions; SHEP with its defaults (Algorithm 1)."
        ),
        argv=(
            "--task",
            "vmas/navigation",
            "--algorithm",
            "iql",
            "--plugins",
            "none",
            "shep",
            "--frames",
            "60000",
        ),
    ),
    Experiment(
        name="hetdps-navigation",
        method="HetDPS",
        claim=(
            "Dynamic parameter sharing driven by heterogeneity distances matches or beats full sharing and no "
            "sharing (its MPE/SMAC tasks), by regrouping agents whose behaviour differs."
        ),
        scale=(
            "vmas/navigation (3 agents with their own goals), IQL on hetplug's slot model for both arms (only the "
            "regrouping differs), 60k frames, regrouping every 10 iterations."
        ),
        argv=(
            "--task",
            "vmas/navigation",
            "--algorithm",
            "iql",
            "--plugins",
            "none",
            "hetdps",
            "--frames",
            "60000",
            "--set",
            "hetdps.interval=10",
        ),  # fmt: skip
    ),
    Experiment(
        name="shppo-navigation",
        method="SHPPO",
        claim=(
            "SHPPO's latent-generated heterogeneous layer improves on its HAPPO backbone with a shared actor "
            "(SMAC, Google Research Football) and transfers zero-shot to other team sizes."
        ),
        scale=(
            "vmas/navigation (3 agents), MAPPO with hetplug's SHPPO actor in both arms (only SHPPO's latent "
            "learning differs), 60k frames instead of millions."
        ),
        argv=(
            "--task",
            "vmas/navigation",
            "--algorithm",
            "mappo",
            "--plugins",
            "none",
            "shppo",
            "--frames",
            "60000",
        ),
    ),
]


def run(names: list[str] | None, workers: int) -> int:
    """Run (or finish) the experiments and copy their summaries into docs/results/."""
    status = 0
    for exp in EXPERIMENTS:
        if names and exp.name not in names:
            continue
        out = RUNS / exp.name
        argv = [*exp.argv, "--seeds", str(exp.seeds), "--workers", str(workers), "--out", str(out)]
        print(f"== {exp.name}: hetplug compare {' '.join(argv)}", flush=True)
        code = subprocess.call([sys.executable, "-m", "hetplug_benchmarl.cli", "compare", *argv])
        if code:
            status = code
            continue
        target = DOCS / exp.name
        target.mkdir(parents=True, exist_ok=True)
        for name in ("summary.json", "aggregate.png", "curves.png"):
            if (out / name).exists():
                shutil.copy2(out / name, target / name)
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
        provenance = {"command": exp.command, "commit": commit.stdout.strip(),
                      "date": datetime.now(timezone.utc).strftime("%Y-%m-%d")}  # fmt: skip
        (target / "provenance.yaml").write_text("".join(f"{k}: {v}\n" for k, v in provenance.items()))
    return status


def verdict(summary: dict) -> tuple[str, str]:
    """(verdict, reason) from the first plugin variant's P(improvement) over the baseline."""
    (name, p), *_ = summary["prob_improvement"].items()
    runs = min(summary["variants"][name]["runs"], summary["variants"][p["over"]]["runs"])
    low, high = p["ci"]
    if runs < 5:
        return "inconclusive", f"only {runs} finished runs per variant (5 needed)"
    if low > 0.5:
        return "reproduced", f"P(improvement) {p['value']:.2f}, 95% CI [{low:.2f}, {high:.2f}] excludes 0.5"
    if high < 0.5:
        return (
            "not reproduced at this scale",
            f"worse than {p['over']}: P(improvement) CI [{low:.2f}, {high:.2f}]",
        )
    return (
        "not reproduced at this scale",
        f"no difference beyond noise: P(improvement) {p['value']:.2f}, CI [{low:.2f}, {high:.2f}] contains 0.5",
    )


def page() -> str:
    """docs/results.md from the committed summaries (and a note for experiments not run yet)."""
    lines = [
        "# Results: does each method help, at a scale this project can run?",
        "",
        "Generated by `python examples/results.py page` from `docs/results/*/summary.json`; no number here is "
        "typed by hand. Each experiment is a `hetplug compare` grid ([compare.md](compare.md)): every variant "
        "trained with at least 5 seeds, scored by the mean evaluation episode reward over the last quarter of "
        "training, summarised with rliable (IQM, 95% stratified bootstrap CIs, probability of improvement). "
        "Verdicts: *reproduced* (the method beats its baseline beyond noise), *not reproduced at this scale* (no "
        "difference beyond noise, or worse), *inconclusive* (too few finished runs). The scale is far below the "
        "papers': a verdict here says what these runs show, not what the method can do at its paper's scale.",
        "",
    ]
    for exp in EXPERIMENTS:
        lines += [f"## {exp.method}: {exp.name}", "", f"**The paper's claim.** {exp.claim}", "",
                  f"**This experiment.** {exp.scale}", "", f"    {exp.command}", ""]  # fmt: skip
        summary_path = DOCS / exp.name / "summary.json"
        if not summary_path.exists():
            lines += ["**Not run yet.** The command above produces it (resumable).", ""]
            continue
        summary = json.loads(summary_path.read_text())
        provenance = (DOCS / exp.name / "provenance.yaml").read_text().strip().replace("\n", "; ")
        lines += ["| variant | runs | IQM | 95% CI | P(improvement over baseline) |", "|---|---|---|---|---|"]
        for name, v in summary["variants"].items():
            p = summary["prob_improvement"].get(name)
            pi = f"{p['value']:.2f} [{p['ci'][0]:.2f}, {p['ci'][1]:.2f}]" if p else "(baseline)"
            lines.append(
                f"| {name} | {v['runs']} | {v['iqm']:+.4f} | [{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}] | {pi} |"
            )
        word, reason = verdict(summary)
        lines += ["", f"**Verdict: {word}** ({reason}).", "",
                  f"![curves]({'results/' + exp.name + '/curves.png'})", "", f"<sub>{provenance}</sub>", ""]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["run", "page"])
    p.add_argument("--only", nargs="+", help="experiment names (default: all)")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    if args.what == "run":
        code = run(args.only, args.workers)
        (ROOT / "docs" / "results.md").write_text(page())
        return code
    (ROOT / "docs" / "results.md").write_text(page())
    print(f"wrote {ROOT / 'docs' / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
