"""``hetplug compare``: is a method better than noise? Variants x seeds on Ray, rliable statistics.

One concern per module, each usable from Python with plain data:

- :mod:`~hetplug_benchmarl.compare.tasks`: ``family/task`` names -> BenchMARL tasks (VMAS today).
- :mod:`~hetplug_benchmarl.compare.spec`: the grid (variants x seeds), ``--set`` options,
  one-line :class:`SpecError` before anything runs.
- :mod:`~hetplug_benchmarl.compare.run`: one run = one BenchMARL experiment -> its json
  (variant-named); :func:`hetplug_callback` builds the adapter's callback.
- :mod:`~hetplug_benchmarl.compare.engine`: Ray (local or ``address``), a task per run,
  one retry, progress with ETA.
- :mod:`~hetplug_benchmarl.compare.store`: ``OUT/runs`` files, resuming.
- :mod:`~hetplug_benchmarl.compare.metric`: BenchMARL json -> curves and one score per run.
- :mod:`~hetplug_benchmarl.compare.stats`: rliable's IQM, stratified bootstrap CIs,
  probability of improvement.
- :mod:`~hetplug_benchmarl.compare.plots`: aggregate and sample-efficiency PNGs.
- :mod:`~hetplug_benchmarl.compare.summary`: ``summary.json`` (schema there) and its plots.
- :mod:`~hetplug_benchmarl.compare.collect`: the same from a BenchMARL/Hydra multirun folder.
- :mod:`~hetplug_benchmarl.compare.cli`: the command line.

Nothing heavy is imported here: BenchMARL, Ray and rliable load when used.
"""

from __future__ import annotations

from hetplug_benchmarl.compare.engine import Engine, EngineError
from hetplug_benchmarl.compare.metric import Curve, Metric, RunRecord
from hetplug_benchmarl.compare.spec import Grid, RunSpec, Settings, SpecError, Variant, make_grid

__all__ = [
    "Curve",
    "Engine",
    "EngineError",
    "Grid",
    "Metric",
    "RunRecord",
    "RunSpec",
    "Settings",
    "SpecError",
    "Variant",
    "make_grid",
]
