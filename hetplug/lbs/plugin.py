"""The ``lbs`` plugin: Large Batch Sharing through the replay hooks.

The host keeps one lockstep buffer per agent (its own storage, or
:class:`hetplug.lbs.AgentBuffers`) with ``spec.capacity`` slots each; a stored row of a
``TrajectoryBatch`` is one step of all ``spec.n_agents`` agents. At sampling the host
passes ``td_fn(sources [K], slots [K]) -> [N, K]``, every learner's TD error on every
candidate, and gets back ``SampleResult`` with ``[N, B]`` fields: learner ``i`` trains on
agent ``sources[i, b]``'s transition at slot ``indices[i, b]`` with weight ``weights[i, b]``.
"""

from __future__ import annotations

from typing import Any

import torch

from hetplug.hookspecs import hookimpl
from hetplug.lbs.sharing import LargeBatchSharing, LBSConfig, TDFunction
from hetplug.state import read_versioned, versioned
from hetplug.types import HostSpec, SampleResult, TrajectoryBatch


class LBSPlugin:
    """LBS as a hetplug plugin (name ``lbs``)."""

    config_class = LBSConfig

    def __init__(self, config: LBSConfig | None = None) -> None:
        self.config = config or LBSConfig()
        self.spec: HostSpec | None = None
        self.sharing: LargeBatchSharing | None = None

    @hookimpl
    def hetplug_configure(self, spec: HostSpec) -> None:
        self.spec = spec
        self.sharing = LargeBatchSharing(spec.n_agents, spec.capacity, self.config, device=spec.device)

    @hookimpl
    def hetplug_replay_add(self, batch: TrajectoryBatch) -> torch.Tensor:
        sharing = self._require()
        for name in ("obs", "actions"):
            value = getattr(batch, name)
            if value is not None and value.dim() >= 3 and value.shape[2] != sharing.n_agents:
                raise ValueError(
                    f"{name} has {value.shape[2]} agents in dim 2 but the host spec has n_agents={sharing.n_agents}"
                )
        return sharing.add(batch.batch_size)

    @hookimpl
    def hetplug_replay_sample(
        self, batch_size: int, generator: torch.Generator | None, td_fn: TDFunction | None
    ) -> SampleResult:
        out = self._require().sample(batch_size, td_fn, generator)
        dtype = self.spec.dtype  # the host's
        return SampleResult(out.indices, out.weights.to(dtype), out.probabilities.to(dtype), out.sources)

    @hookimpl
    def hetplug_after_update(self, update: int) -> dict[str, Any]:
        return dict(self._require().last_metrics)

    def _require(self) -> LargeBatchSharing:
        if self.sharing is None:
            raise RuntimeError("the lbs plugin is not configured: call hook.hetplug_configure(spec) first")
        return self.sharing

    def state_dict(self) -> dict[str, Any]:
        return versioned({"sharing": self._require().state_dict()})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = read_versioned(state, "lbs")
        self._require().load_state_dict(state["sharing"])
