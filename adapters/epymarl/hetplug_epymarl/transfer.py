"""Zero-shot team size in EPyMARL: evaluate a saved agent with another number of agents,
without training (the SHPPO paper's scalability test, section V-D).

    # train with 2 agents, saving the models
    hetplug-epymarl --config=mappo_shppo --env-config=gymma with \\
        env_args.key=rware:rware-tiny-2ag-v2 obs_agent_id=False save_model=True t_max=2000000
    # evaluate the saved agent with 4 agents
    hetplug-epymarl --transfer --config=mappo_shppo --env-config=gymma with \\
        env_args.key=rware:rware-tiny-4ag-v2 obs_agent_id=False evaluate=True \\
        checkpoint_path=results/models/<run> test_nepisode=100

EPyMARL's own ``evaluate=True`` loads everything the learner saved, and the critic's
input (the state, and agent ids) and the optimisers' state are sized by the team, so it
fails at another team size. With ``--transfer`` (``install(transfer=True)``) the learner
loads the agents only (``mac.load_models``: ``agent.th``), which is all that acts; the
rest of the run is EPyMARL's evaluation (``test_nepisode`` episodes in test mode, its
``test_return_mean``). Only an agent whose parameters do not depend on the team size
transfers: the parameter-shared ``rnn`` agent or hetplug's SHPPO agent, with agent inputs
whose size does not either, so ``obs_agent_id=False`` and an environment whose
observation size is fixed (rware's local view: 71 for any team; lbforaging's observation
lists every player, 3 * (foods + players) numbers, so it grows with the team). A
mismatch is refused naming the parameter.
"""

from __future__ import annotations

import os
from typing import Any

import torch


def check_args(args: Any) -> None:
    """A transfer run evaluates a checkpoint: refuse anything else before it is built."""
    if not getattr(args, "checkpoint_path", ""):
        raise ValueError(
            "hetplug-epymarl --transfer evaluates a saved agent: set checkpoint_path=<models dir>"
        )
    if not getattr(args, "evaluate", False):
        raise ValueError(
            "hetplug-epymarl --transfer evaluates without training (zero-shot): set evaluate=True"
        )


def load_agents(mac, path: str) -> None:
    """``mac``'s agent networks from ``path/agent.th``, refused by name when a parameter's
    shape differs (it depends on the team size or on inputs that do)."""
    saved = torch.load(os.path.join(path, "agent.th"), map_location="cpu")
    mine = mac.agent.state_dict()
    problems = [
        f"{k!r}: saved {tuple(v.shape)}, here {tuple(mine[k].shape)}"
        for k, v in saved.items()
        if k in mine and tuple(v.shape) != tuple(mine[k].shape)
    ]
    missing = sorted(set(saved) ^ set(mine))
    if problems or missing:
        raise ValueError(
            "hetplug --transfer: the saved agent does not fit this team "
            f"({'; '.join(problems + [f'{k!r} only on one side' for k in missing])}). Parameters sized "
            "by the team (non-shared agents) or inputs that grow with it (obs_agent_id=True; an "
            "environment whose observation lists every agent, such as lbforaging) cannot transfer"
        )
    mac.agent.load_state_dict({k: v.to(next(iter(mine.values())).device) for k, v in saved.items()})


class AgentsOnly:
    """The host's learner (or hetplug's wrapper of it) whose ``load_models`` loads the
    agents only; everything else is the learner's own."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.loaded_from: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["inner"], name)

    def load_models(self, path: str) -> None:
        load_agents(self.inner.mac, path)
        self.loaded_from = path

    def train(self, *args: Any, **kwargs: Any):
        raise RuntimeError("hetplug --transfer evaluates without training")
