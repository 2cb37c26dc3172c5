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

from hetplug._checks import check_int
from hetplug.hookspecs import hookimpl
from hetplug.lbs.sharing import LargeBatchSharing, LBSConfig, TDFunction
from hetplug.state import read_versioned, require_keys, versioned
from hetplug.types import (
    HostSpec,
    SampleResult,
    TrajectoryBatch,
    check_batch,
    check_max_steps,
    check_reconfigure,
    require_configured,
)


class LBSPlugin:
    """LBS as a hetplug plugin (name ``lbs``)."""

    config_class = LBSConfig

    def __init__(self, config: LBSConfig | None = None) -> None:
        self.config = config or LBSConfig()
        self.spec: HostSpec | None = None
        self.sharing: LargeBatchSharing | None = None

    @hookimpl
    def hetplug_configure(self, spec: HostSpec) -> None:
        if check_reconfigure(self.spec, spec, "lbs"):
            return  # configured with this very spec already
        self.sharing = LargeBatchSharing(spec.n_agents, spec.capacity, self.config, device=spec.device)
        self.spec = spec

    @hookimpl
    def hetplug_replay_add(self, batch: TrajectoryBatch) -> torch.Tensor:
        sharing = self._require()
        check_batch(batch, "lbs")
        check_max_steps(batch, self.spec)
        for name in ("obs", "actions"):
            value = getattr(batch, name)
            if value is not None and value.dim() >= 3 and value.shape[2] != sharing.n_agents:
                raise ValueError(
                    f"batch.{name} must have n_agents={sharing.n_agents} agents in dim 2 (HostSpec), got "
                    f"batch.{name} of shape {tuple(value.shape)}"
                )
        if batch.batch_size > sharing.capacity:
            raise ValueError(
                f"batch.batch_size must be <= capacity={sharing.capacity}, got batch.batch_size={batch.batch_size}"
            )
        return sharing.add(batch.batch_size)  # B = 0: a no-op

    @hookimpl
    def hetplug_replay_sample(
        self, batch_size: int, generator: torch.Generator | None, td_fn: TDFunction | None
    ) -> SampleResult:
        out = self._require().sample(batch_size, td_fn, generator)
        dtype = self.spec.dtype  # the host's
        return SampleResult(out.indices, out.weights.to(dtype), out.probabilities.to(dtype), out.sources)

    @hookimpl
    def hetplug_after_update(self, update: int) -> dict[str, Any]:
        check_int("update", update, 0)
        return dict(self._require().last_metrics)

    def _require(self) -> LargeBatchSharing:
        require_configured(self.sharing, "lbs")
        return self.sharing

    def state_dict(self) -> dict[str, Any]:
        return versioned({"sharing": self._require().state_dict()})

    def check_state(self, state: Any) -> dict[str, Any]:
        """Validate a :meth:`state_dict` without changing anything."""
        sharing = self._require()
        state = require_keys("lbs", read_versioned(state, "lbs"), ("sharing",))
        return sharing.check_state(state["sharing"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`, validated whole first (on error nothing changes)."""
        new = self.check_state(state)
        self.sharing._assign_state(new)
