"""``hetplug.th``: the hetplug state of a run, beside EPyMARL's own checkpoint files.

EPyMARL's ``learner.save_models(path)`` writes the networks (``agent.th``, ``mixer.th``,
...); the session's state goes to ``path/hetplug.th``: every plugin's state, the update
counter and, with a prioritiser, the stored episodes (EPyMARL saves no buffer, and
priorities without their episodes would point at nothing). The file carries a
``format_version`` (:mod:`hetplug.state`); another version is refused, naming it.
"""

from __future__ import annotations

import torch

from hetplug.state import read_versioned, versioned

FILE = "hetplug.th"


def save(session, path: str) -> None:
    torch.save(versioned(session.state_dict()), f"{path}/{FILE}")


def load(session, path: str) -> None:
    """Restore ``path/hetplug.th`` into ``session`` (before the host loads its networks)."""
    try:
        state = torch.load(f"{path}/{FILE}", weights_only=False)
    except FileNotFoundError:
        raise ValueError(f"{path}/{FILE} not found: the checkpoint was saved without hetplug") from None
    session.load_state_dict(read_versioned(state, f"{path}/{FILE}"))
