"""BenchMARL's progress bar without NaN.

BenchMARL writes ``mean return = <value>`` on its bar every iteration, and the value is
NaN when no episode ended in that iteration (long episodes, short iterations). The bar
then shows the last return that existed, or says that none has yet.
"""

from __future__ import annotations

import math

from tqdm import tqdm

PREFIX = "mean return = "


def show_last_return(experiment) -> None:
    """Rewrite a ``nan`` on the experiment's running bar (called once per iteration)."""
    value = experiment.mean_return
    finite = isinstance(value, (int, float)) and math.isfinite(value)
    if finite:
        experiment.__dict__["_hetplug_last_return"] = value
    last = experiment.__dict__.get("_hetplug_last_return")
    text = f"{PREFIX}{last}" if last is not None else f"{PREFIX}(no episode finished yet)"
    for bar in list(getattr(tqdm, "_instances", ())):
        if str(bar.desc).startswith(f"{PREFIX}nan"):
            bar.set_description(text, refresh=False)
