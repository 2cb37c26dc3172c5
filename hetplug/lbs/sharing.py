"""Large Batch Sharing (LBS, ../shared/papers/lbs.txt section 3, Appendix A; LaBER).

For every learner i, at each update:

1. every agent k draws B slots from its own buffer with p1 (uniform as in the paper, or
   prioritised by the owner's last |TD|);
2. the M mini-batches form one large batch of K = M*B transitions, shared by all learners;
3. the host's ``td_fn`` returns every learner's TD error on every item, ``[M, K]``;
4. learner i down-samples B items with p2_k proportional to its priority P_ik
   (|TD| or min(|TD|, 1), plus eps) and weights them w_k = 1 / (K p2_k) (``weighting="mean"``),
   so that its weighted mini-batch gradient is unbiased for its large-batch mean gradient.

This module is the index side: it knows sizes, slots and p1 priorities, not the data.
The data lives with the host, or in :class:`hetplug.lbs.AgentBuffers`; ``td_fn`` receives
``(sources [K], slots [K])`` and reads it from there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from hetplug._checks import (
    check_bool,
    check_choice,
    check_device,
    check_generator,
    check_int,
    check_mapping,
    check_range,
    check_tensor,
    check_values,
    config_from_dict,
)
from hetplug.replay.large_batch import WEIGHTINGS, draw_with_weights
from hetplug.state import require_keys, state_equal, state_int, state_tensor
from hetplug.types import SampleResult

#: what LargeBatchSharing.state_dict() holds
STATE_KEYS = ("n_agents", "capacity", "config", "p1", "p1_max", "size", "cursor")

TDFunction = Callable[[torch.Tensor, torch.Tensor], Any]
"""``td_fn(sources [K], slots [K]) -> td [M, K]`` (or ``(td, log_prob)``, both ``[M, K]``)."""

PRIORITIES = ("td", "clipped", "uniform")


@dataclass
class LBSConfig:
    """Settings of Large Batch Sharing. Defaults follow the paper (uniform p1, |TD| p2)."""

    priority: str = "td"
    """p2's priority: ``"td"`` = |TD| (L2 loss), ``"clipped"`` = min(|TD|, 1) (Huber loss;
    LaBER's surrogate for the per-sample gradient norm), ``"uniform"`` (no selection)."""
    eps: float = 1e-6
    """Added to every priority so no candidate is starved."""
    weighting: str = "mean"
    """LaBER's weight normalisation: ``"mean"`` (w = mean(P)/P_k = 1/(K p2), unbiased, the
    paper's w_k), ``"lazy"`` (1/P_k) or ``"max"`` (lazy over its batch maximum)."""
    budget: int | None = None
    """Communication budget: how many of the other agents' transitions a learner receives
    per update (a random subset of the large batch's (M-1)*B foreign items; its own B are
    always there). None shares everything; 0 is LaBER on the agent's own buffer."""
    p1: str = "uniform"
    """How each agent draws its B slots: ``"uniform"`` (the paper) or ``"prioritized"``
    (P^p1_alpha of the owner's latest |TD| on that transition, refreshed whenever it
    appears in a large batch; new items get the largest priority seen)."""
    p1_alpha: float = 0.6
    """Exponent on p1 priorities (``p1="prioritized"`` only)."""
    p1_beta: float = 0.4
    """IS exponent for p1: weights (C p1)^-beta / max, multiplied into the final weights."""
    importance_correction: bool = False
    """SEAC-style off-policy correction for stochastic policies: multiply learner i's weight
    for agent k's transition by pi_i(a|o) / pi_k(a|o). ``td_fn`` must then return
    ``(td, log_prob)`` with ``log_prob[i, j] = log pi_i(a_j | o_j)``. Off for DQN (the
    paper's setting), where no such ratio exists."""
    ratio_clip: float | None = None
    """Upper clip on that ratio (None: unclipped, as in SEAC)."""
    check_inputs: bool = True
    """Validate ``td_fn``'s output (one host synchronisation per update)."""

    def __post_init__(self) -> None:
        check_choice("priority", self.priority, PRIORITIES)
        check_range("eps", self.eps, 0.0)
        check_choice("weighting", self.weighting, WEIGHTINGS)
        if self.budget is not None:
            check_int("budget", self.budget, 0)
        check_choice("p1", self.p1, ("uniform", "prioritized"))
        check_range("p1_alpha", self.p1_alpha, 0.0)
        check_range("p1_beta", self.p1_beta, 0.0)
        check_bool("importance_correction", self.importance_correction)
        check_bool("check_inputs", self.check_inputs)
        if self.ratio_clip is not None:
            check_range("ratio_clip", self.ratio_clip, 0.0, low_open=True)


class LargeBatchSharing:
    """Selection and importance weights of LBS for M learners over M lockstep buffers.

    Args:
        n_agents: M, the learners (each owns one buffer).
        capacity: slots per agent buffer (a ring starting at 0, like :class:`AgentBuffers`).
        config: an :class:`LBSConfig` or a mapping of its fields.
        device: where indices and priorities live.

    Example:
        >>> buffers = AgentBuffers(4, 1000)
        >>> lbs = LargeBatchSharing(4, 1000)
        >>> lbs.add(len(buffers.add({"obs": torch.rand(64, 4, 10)})))
        >>> def td_fn(sources, slots):  # every learner's TD on the K = 4 * 32 candidates
        ...     obs = buffers.gather(sources, slots)["obs"]
        ...     return q_all_learners(obs) - targets(obs)  # [4, K]
        >>> slots, weights = lbs.sample(32, td_fn)  # [4, 32] each; .sources says whose
    """

    def __init__(
        self,
        n_agents: int,
        capacity: int,
        config: LBSConfig | dict[str, Any] | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        check_int("n_agents", n_agents, 1)
        check_int("capacity", capacity, 1)
        self.config = config_from_dict(LBSConfig, config, "lbs")
        self.n_agents = n_agents
        self.capacity = capacity
        self.device = check_device("device", device)
        self._size = 0
        self._cursor = 0
        # p1 priorities per (agent, slot), only used with p1="prioritized".
        self._p1 = torch.zeros(n_agents, capacity, dtype=torch.float64, device=self.device)
        self._p1_max = torch.ones((), dtype=torch.float64, device=self.device)
        self._rows = _rows(n_agents, self.device)  # [M, 1] learner ids
        self._sources: dict[int, torch.Tensor] = {}  # B -> [K] owner of each large-batch item
        self.last_metrics: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return self._size

    @property
    def p1_priorities(self) -> torch.Tensor:
        """``[M, len]`` the stored p1 priorities (meaningful with ``p1="prioritized"``)."""
        return self._p1[:, : self._size]

    def add(self, count: int) -> torch.Tensor:
        """Register ``count`` new transitions per agent; returns their slots ``[count]``
        (``count=0``: a no-op, no slots)."""
        check_int("count", count, 0, self.capacity)
        if count == 0:
            return torch.zeros(0, dtype=torch.long, device=self.device)
        slots = (self._cursor + torch.arange(count, device=self.device)) % self.capacity
        self._p1[:, slots] = self._p1_max
        self._cursor = (self._cursor + count) % self.capacity
        self._size = min(self.capacity, self._size + count)
        return slots

    def sample(
        self,
        batch_size: int,
        td_fn: TDFunction | None = None,
        generator: torch.Generator | None = None,
    ) -> SampleResult:
        """Every learner's B transitions: ``indices``, ``sources``, ``weights``, ``probabilities``, all ``[M, B]``.

        With uniform p1 and uniform p2 (and no budget or correction) the large batch carries
        no information: the items are drawn directly and uniformly from the union of the
        buffers, exactly as a shared replay buffer would (``td_fn`` is not called).

        Raises:
            ValueError: empty buffers, a budget above the (M-1)*B foreign items, a missing
                ``td_fn``, or a ``td_fn`` result of the wrong shape or with NaN/inf. Nothing
                stored changes when it raises.
        """
        c = self.config
        M = self.n_agents
        check_int("batch_size", batch_size, 1)
        check_generator("generator", generator)
        if td_fn is not None and not callable(td_fn):
            raise TypeError(
                f"td_fn must be None or a function (sources, slots) -> [M, K], got td_fn={td_fn!r}"
            )
        if self._size == 0:
            raise ValueError("cannot sample: the agent buffers are empty (add transitions first)")
        B = batch_size
        K = M * B
        if c.budget is not None and c.budget > (M - 1) * B:
            raise ValueError(
                f"budget={c.budget} exceeds the (M-1)*B = {(M - 1) * B} transitions of the other agents "
                f"in a large batch (M={M}, B={B})"
            )
        budgeted = c.budget is not None and c.budget < (M - 1) * B
        dev = self.device
        if c.p1 == "uniform" and c.priority == "uniform" and not budgeted and not c.importance_correction:
            flat = torch.randint(M * self._size, (M, B), generator=generator, device=dev)
            sources, slots = flat // self._size, flat % self._size
            ones = torch.ones(M, B, device=dev)
            self.last_metrics = {"lbs/shared_fraction": (sources != self._rows).float().mean()}
            return SampleResult(slots, ones, ones / (M * self._size), sources)
        if td_fn is None:
            raise ValueError(
                "td_fn is required: LBS selects by each learner's TD error on the large batch "
                "(td_fn(sources [K], slots [K]) -> [M, K])"
            )

        # 1-2: each agent's B slots (p1), concatenated agent-major into the large batch.
        if c.p1 == "uniform":
            slots_mb = torch.randint(self._size, (M, B), generator=generator, device=dev)
            w1 = None
        else:
            mass = self._p1[:, : self._size].pow(c.p1_alpha)
            p1 = mass / mass.sum(-1, keepdim=True)
            slots_mb = torch.multinomial(p1, B, replacement=True, generator=generator)
            p_min = torch.where(p1 > 0, p1, torch.inf).amin(-1, keepdim=True)
            w1 = ((p1.gather(-1, slots_mb) / p_min) ** -c.p1_beta).reshape(K)
        if B not in self._sources:
            self._sources[B] = self._rows.expand(M, B).reshape(K)
        sources = self._sources[B]
        slots = slots_mb.reshape(K)

        # 3: every learner's TD on every candidate.
        td, log_prob = self._call_td_fn(td_fn, sources, slots, M, K)

        # 4: p2 over the candidates (restricted by the budget), weights 1/(K p2).
        absd = td.detach().abs().to(torch.float64)
        if c.priority == "td":
            pri = absd + c.eps
        elif c.priority == "clipped":
            pri = absd.clamp_max(1.0) + c.eps
        else:
            pri = torch.ones_like(absd)
        mask = self._budget_mask(sources, M, K, generator) if budgeted else None
        # td was validated above; with eps > 0 (or uniform) every row has positive mass, since
        # a learner's own items are always allowed, so only eps = 0 needs the zero-row check.
        allowed = pri if mask is None else pri.masked_fill(~mask, 0.0)
        if (
            c.check_inputs
            and c.eps == 0
            and c.priority != "uniform"
            and not bool((allowed.sum(-1) > 0).all())
        ):
            raise ValueError("priorities are all zero (or masked) in at least one row: nothing can be drawn")
        pick, weights, probs = draw_with_weights(allowed, B, c.weighting, generator, mask)
        if w1 is not None:
            weights = weights * w1[pick]
        cols = torch.arange(K, device=dev)
        if log_prob is not None:
            behaviour = log_prob[sources, cols]  # log pi_k(a_j|o_j), k = source
            ratio = (log_prob - behaviour).gather(-1, pick).exp()
            if c.ratio_clip is not None:
                ratio = ratio.clamp_max(c.ratio_clip)
            weights = weights * ratio.to(weights.dtype)
        if c.p1 == "prioritized":
            own = absd[sources, cols] + c.eps  # owner's |TD| on its items
            self._p1[sources, slots] = own
            self._p1_max = torch.maximum(self._p1_max, own.max())
        sel_sources = sources[pick]
        self.last_metrics = {
            "lbs/shared_fraction": (sel_sources != self._rows).float().mean(),
            "lbs/td_large_batch": absd.mean(),
            "lbs/td_selected": absd.gather(-1, pick).mean(),
        }
        return SampleResult(slots[pick], weights.float(), probs.float(), sel_sources)

    def _call_td_fn(
        self, td_fn: TDFunction, sources: torch.Tensor, slots: torch.Tensor, M: int, K: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = td_fn(sources, slots)
        log_prob = None
        if self.config.importance_correction:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise ValueError(
                    "importance_correction=True: td_fn must return (td, log_prob), both [M, K], "
                    f"got {type(out).__name__}"
                )
            out, log_prob = out
        for name, value in (("td_fn(sources, slots)", out), ("td_fn's log_prob", log_prob)):
            if value is None:
                continue
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != (M, K):
                raise ValueError(
                    f"{name} must be a tensor of shape [M, K] = [{M}, {K}] (every learner on every "
                    f"candidate), got {tuple(getattr(value, 'shape', ())) or type(value).__name__}"
                )
            if self.config.check_inputs:
                check_values([(name, value, "finite", None)])
        return out.to(self.device), None if log_prob is None else log_prob.to(self.device, torch.float64)

    def _budget_mask(
        self, sources: torch.Tensor, M: int, K: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        """``[M, K]``: own items plus ``budget`` random foreign ones per learner."""
        own = sources.unsqueeze(0) == self._rows
        scores = torch.rand(M, K, generator=generator, device=self.device)
        scores = scores.masked_fill(own, -1.0)  # own items never use the budget
        chosen = scores.topk(self.config.budget, dim=-1).indices
        return own.scatter(-1, chosen, True)

    def state_dict(self) -> dict[str, Any]:
        return {
            "n_agents": self.n_agents,
            "capacity": self.capacity,
            "config": dict(self.config.__dict__),
            "p1": self._p1.clone(),
            "p1_max": self._p1_max.clone(),
            "size": self._size,
            "cursor": self._cursor,
            # what hetplug_after_update reports next: a restored run reports the same
            "last_metrics": {k: v.detach().clone() for k, v in self.last_metrics.items()},
        }

    def check_state(self, state: Any) -> dict[str, Any]:
        """Validate a :meth:`state_dict` without changing anything; returns what
        :meth:`load_state_dict` assigns."""
        where = "lbs"
        require_keys(where, state, STATE_KEYS)
        state_equal(where, state, "n_agents", self.n_agents, "LBS")
        state_equal(where, state, "capacity", self.capacity, "LBS")
        config = config_from_dict(LBSConfig, state["config"], "lbs state['config']")
        p1 = state_tensor(where, state, "p1", [self.n_agents, self.capacity], check="finite_nonnegative")
        p1_max = state_tensor(where, state, "p1_max", [], check="finite_nonnegative")
        size = state_int(where, state, "size", 0, self.capacity)
        cursor = state_int(where, state, "cursor", 0, self.capacity - 1)
        metrics = check_mapping(
            "lbs state['last_metrics']", state.get("last_metrics", {}), "a mapping name -> tensor"
        )
        for name, value in metrics.items():
            check_tensor(f"lbs state['last_metrics'][{name!r}]", value, 0, "floating")
        return {"config": config, "p1": p1, "p1_max": p1_max, "size": size, "cursor": cursor,
                "last_metrics": {k: v.to(self.device).clone() for k, v in metrics.items()}}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`, validated whole first (on error nothing changes)."""
        self._assign_state(self.check_state(state))

    def _assign_state(self, new: dict[str, Any]) -> None:
        self.config = new["config"]
        self._p1 = new["p1"].to(self.device, torch.float64).clone()
        self._p1_max = new["p1_max"].to(self.device, torch.float64).clone()
        self._size = new["size"]
        self._cursor = new["cursor"]
        self._sources = {}
        self.last_metrics = new["last_metrics"]


def _rows(M: int, device: torch.device) -> torch.Tensor:
    return torch.arange(M, device=device).unsqueeze(-1)
