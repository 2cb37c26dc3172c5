"""What a run scores: read from BenchMARL's json, reduced to one number per run.

BenchMARL's ``create_json`` (marl-eval's layout) stores, at every evaluation ``step_K``,
the frames collected so far (``step_count``) and, per metric, one value per evaluation
episode. ``return`` is the episode reward: rewards summed over the episode, averaged over
the agent groups (BenchMARL's ``Logger.log_evaluation``).

The default metric is the **mean episode reward over the last quarter of training**: the
mean of ``return`` over the evaluation episodes and over the evaluations whose
``step_count`` lies in the last quarter of the run's frames (after 75 % of them; the last
evaluation always counts).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Curve:
    """One run's evaluations: frames collected and the metric's episode mean at each."""

    frames: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class RunRecord:
    """One run found in a BenchMARL json file."""

    environment: str
    task: str
    algorithm: str
    """the json's algorithm name: the variant (``iql+shep``)"""
    seed: int
    curve: Curve
    source: str = ""
    """the file it came from"""


@dataclass(frozen=True)
class Metric:
    """A run's score: the mean of ``key`` over the evaluations in the last ``last_fraction``
    of its frames."""

    key: str = "return"
    """the json metric (``return``, or a group's ``<group>_return``)"""
    last_fraction: float = 0.25
    """fraction of training at the end whose evaluations count"""

    def __post_init__(self) -> None:
        if not 0 < self.last_fraction <= 1:
            raise ValueError(f"last_fraction must be in (0, 1], got {self.last_fraction}")

    def describe(self) -> str:
        share = "quarter" if self.last_fraction == 0.25 else f"{self.last_fraction:g} of the frames"
        return (
            f"mean of the evaluation episodes' '{self.key}' (episode reward: rewards summed over the "
            f"episode, mean over agent groups) over the evaluations in the last {share} of training"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "last_fraction": self.last_fraction, "description": self.describe()}

    def score(self, curve: Curve) -> float:
        """The run's score (the last evaluation counts even when it alone is in the window)."""
        end = curve.frames[-1]
        window = [
            v for f, v in zip(curve.frames, curve.values, strict=True) if f > (1 - self.last_fraction) * end
        ]
        window = window or [curve.values[-1]]
        return sum(window) / len(window)


def records_from_json(data: Mapping[str, Any], key: str = "return", source: str = "") -> Iterator[RunRecord]:
    """Every run in one BenchMARL json dict (a file, or several merged with
    ``benchmarl.eval_results.load_and_merge_json_dicts``). Steps are ordered by frames;
    steps without the metric are skipped.

    Raises:
        ValueError: the dict is not in BenchMARL's layout.
    """
    for environment, tasks in _mapping(data, source).items():
        for task, algos in _mapping(tasks, source).items():
            for algorithm, seeds in _mapping(algos, source).items():
                for seed_key, run in _mapping(seeds, source).items():
                    if not seed_key.startswith("seed_"):
                        raise ValueError(
                            f"{source or 'json'}: expected seed_N under {algorithm!r}, got {seed_key!r}"
                        )
                    points = sorted(
                        (int(step["step_count"]), sum(step[key]) / len(step[key]))
                        for name, step in _mapping(run, source).items()
                        if name.startswith("step_") and step.get(key)
                    )
                    if points:
                        frames, values = zip(*points, strict=True)
                        yield RunRecord(
                            environment, task, algorithm, int(seed_key[5:]), Curve(frames, values), source
                        )


def is_benchmarl_json(data: Any) -> bool:
    """Whether ``data`` has BenchMARL's layout down to a ``seed_N`` entry with steps."""
    try:
        for tasks in data.values():
            for algos in tasks.values():
                for seeds in algos.values():
                    for seed_key, run in seeds.items():
                        return seed_key.startswith("seed_") and any(k.startswith("step_") for k in run)
    except AttributeError:
        return False
    return False


def _mapping(value: Any, source: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{source or 'json'}: not BenchMARL's json layout (found {type(value).__name__})")
    return value
