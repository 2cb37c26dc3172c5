"""Prioritised sampling over a fixed-capacity ring of slots (PER; SHEP eqs. 6-8).

A k-ary sum tree (and a min tree for weight normalisation) stored level by level as
flat tensors. ``add``, ``update`` and ``sample`` touch O(k log_k n) entries per item and
run as a handful of batched tensor ops per tree level, on any device. The only host
synchronisations are the input checks (switch them off with ``check_inputs=False``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from hetplug._checks import (
    check_bool,
    check_choice,
    check_device,
    check_finite_nonnegative,
    check_generator,
    check_int,
    check_range,
    check_tensor,
    config_from_dict,
)
from hetplug.state import require_keys, state_equal, state_int, state_tensor
from hetplug.types import SampleResult

#: what PrioritizedSampler.state_dict() holds ("progress" is optional: older states lack it)
STATE_KEYS = ("capacity", "config", "priorities", "max_priority", "size", "cursor", "sample_calls")


@dataclass
class SamplerConfig:
    """Settings of :class:`PrioritizedSampler` (defaults from Schaul et al., PER, 2016)."""

    alpha: float = 0.6
    """Exponent on stored priorities: ``p_i = P_i^alpha / sum_j P_j^alpha`` (0 = uniform)."""
    beta: float = 0.4
    """Initial IS exponent beta0 in ``w_i = (N p_i)^-beta`` (eq. 7)."""
    beta_final: float = 1.0
    """Value beta is annealed to; 1 makes the weighted estimate unbiased (eq. 8)."""
    beta_steps: int = 0
    """Number of ``sample`` calls over which beta moves linearly to ``beta_final`` (0: fixed)."""
    max_probability: float | None = None
    """Clip every p_i at this value, redistributing the excess (SHEP 4.3). Costs O(n) per
    ``sample`` instead of O(log n); meant for trajectory-level buffers."""
    weight_normalization: str = "max"
    """``"max"``: divide by the largest weight in the buffer (PER, weights <= 1);
    ``"batch"``: by the largest in the batch; ``"none"``: raw ``(N p_i)^-beta``."""
    fanout: int | None = None
    """Children per tree node. None: a power of two near sqrt(capacity / 256), between 16
    and 1024 (64 for 1e6 items), which balances the per-draw work on ``[batch, fanout]``
    rows against the flat scan of the top level."""
    flat_max: int = 16384
    """Up to this capacity a draw scans the flat masses (one cumsum and searchsorted) and a
    write rebuilds the tree's upper levels whole; both beat the tree walk for small
    buffers (trajectory slots). Larger buffers use the tree, whose top level (at most
    ``flat_max`` nodes) is scanned the same way. 0: always the full tree."""
    check_inputs: bool = True
    """Validate priorities and indices (one host synchronisation per call)."""

    def __post_init__(self) -> None:
        check_range("alpha", self.alpha, 0.0)
        check_range("beta", self.beta, 0.0)
        check_range("beta_final", self.beta_final, 0.0)
        check_int("beta_steps", self.beta_steps, 0)
        if self.max_probability is not None:
            check_range("max_probability", self.max_probability, 0.0, 1.0, low_open=True)
        check_choice("weight_normalization", self.weight_normalization, ("max", "batch", "none"))
        if self.fanout is not None:
            check_int("fanout", self.fanout, 2)
        check_int("flat_max", self.flat_max, 0)
        check_bool("check_inputs", self.check_inputs)


class Draw(NamedTuple):
    """Slots drawn by :meth:`PrioritizedSampler.draw`, without IS weights."""

    indices: torch.Tensor  # [B] the drawn slots
    probabilities: torch.Tensor  # [B] their probabilities (after clipping)
    mass: torch.Tensor  # [B] their sampling masses P_i^alpha


class PrioritizedSampler:
    """Prioritised sampling of slots in a ring of ``capacity`` items.

    Args:
        capacity: number of slots; ``add`` fills them in order and then overwrites the oldest.
        config: a :class:`SamplerConfig` or a mapping of its fields.
        device: where the trees live.
        **overrides: fields of :class:`SamplerConfig`, e.g. ``alpha=0.7``.

    Example:
        >>> s = PrioritizedSampler(1000, alpha=0.6)
        >>> idx = s.add(torch.rand(64))
        >>> batch = s.sample(32)
        >>> s.update(batch.indices, torch.rand(32))
    """

    def __init__(
        self,
        capacity: int,
        config: SamplerConfig | dict[str, Any] | None = None,
        device: torch.device | str = "cpu",
        **overrides: Any,
    ) -> None:
        check_int("capacity", capacity, 1)
        if overrides:
            base = config_from_dict(SamplerConfig, config, "sampler")
            merged = {**base.__dict__, **overrides}
            config = config_from_dict(SamplerConfig, merged, "sampler")
        self.config = config_from_dict(SamplerConfig, config, "sampler")
        self.capacity = capacity
        self.device = check_device("device", device)
        self._dtype = torch.float64
        self._size = 0
        self._cursor = 0
        self._sample_calls = 0
        self._progress = 0.0
        self._beta_cache: tuple | None = None  # (progress tensor, (beta, beta_final), beta)
        self._build_trees()
        self._priorities = torch.zeros(capacity, dtype=self._dtype, device=self.device)
        self._max_priority = torch.ones((), dtype=self._dtype, device=self.device)
        self._zero = torch.zeros((), dtype=self._dtype, device=self.device)
        self._last: torch.Tensor | None = None  # [capacity] scratch of update's de-duplication
        self._positions = torch.arange(0, device=self.device)

    def _build_trees(self) -> None:
        """Empty sum and min trees for the capacity and the config's fan-out and flat_max."""
        capacity = self.capacity
        k = self.config.fanout or min(1024, max(16, 1 << round(math.log2(max(1.0, capacity / 256)) / 2)))
        self._fanout = k
        sizes = []
        n = capacity
        while True:  # up to a top level of at most flat_max nodes (or k, the root's children)
            padded = -(-n // k) * k
            sizes.append(padded)
            if padded == k or padded <= self.config.flat_max:
                break
            n = padded // k
        self._sums = [torch.zeros(s, dtype=self._dtype, device=self.device) for s in sizes]
        self._mins = [torch.full((s,), torch.inf, dtype=self._dtype, device=self.device) for s in sizes]
        self._shift = k.bit_length() - 1 if k & (k - 1) == 0 else None  # node // k as a shift

    # ------------------------------------------------------------------ state
    def __len__(self) -> int:
        return self._size

    @property
    def priorities(self) -> torch.Tensor:
        """``[len]`` the stored priorities P_i (before the alpha exponent)."""
        return self._priorities[: self._size]

    @property
    def max_priority(self) -> torch.Tensor:
        """Largest priority ever stored (1.0 before the first); new items default to it."""
        return self._max_priority

    @property
    def beta(self) -> float | torch.Tensor:
        """The IS exponent the next ``sample`` call uses: annealed from ``beta`` to
        ``beta_final`` over ``beta_steps`` sample calls, or by the run's progress set with
        :meth:`set_progress` (when ``beta_steps`` is 0)."""
        c = self.config
        if c.beta_steps:
            return c.beta + (c.beta_final - c.beta) * min(1.0, self._sample_calls / c.beta_steps)
        frac = self._progress
        if not isinstance(frac, torch.Tensor):
            return c.beta + (c.beta_final - c.beta) * frac
        # A 0-d tensor: computed once per progress (set_progress makes a new tensor) and config.
        key = (c.beta, c.beta_final)
        if self._beta_cache is None or self._beta_cache[0] is not frac or self._beta_cache[1] != key:
            self._beta_cache = (frac, key, c.beta + (c.beta_final - c.beta) * frac)
        return self._beta_cache[2]

    def set_progress(self, fraction: float | torch.Tensor) -> None:
        """How far the run is (0 to 1): with ``beta_steps == 0`` beta moves linearly from
        ``beta`` to ``beta_final`` with it (hosts that know their run's length). A 0-d
        tensor is kept as one (no host synchronisation); it is clamped into [0, 1]."""
        if isinstance(fraction, torch.Tensor):
            check_tensor("fraction", fraction, 0, "real")
            self._progress = fraction.detach().to(self.device, self._dtype).clamp(0.0, 1.0)
        else:
            check_range("fraction", fraction, 0.0, 1.0)
            self._progress = float(fraction)

    def probabilities(self) -> torch.Tensor:
        """``[len]`` the sampling probability of every stored item (after clipping)."""
        mass = self._sums[0][: self._size]
        if self.config.max_probability is not None:
            return _clip_probabilities(mass, self.config.max_probability)
        return mass / mass.sum()

    # ------------------------------------------------------------------ writes
    def add(self, priorities: torch.Tensor | None = None, count: int | None = None) -> torch.Tensor:
        """Store new items in the next ring slots and return those slots ``[B]``.

        Args:
            priorities: ``[B]`` non-negative priorities, or None to give ``count`` new
                items the largest priority seen so far (PER's rule for unseen items).

        ``B = 0`` (or ``count=0``) is a no-op that returns no slots.
        """
        if priorities is None:
            if count is None:
                raise ValueError("add needs priorities or a count, got priorities=None and count=None")
            check_int("count", count, 0)
            priorities = self._max_priority.expand(count)
        priorities = self._check_priorities(priorities)
        if self.config.check_inputs:
            check_finite_nonnegative("priorities", priorities)
        return self._append(priorities)

    def _append(self, priorities: torch.Tensor) -> torch.Tensor:
        """:meth:`add` without the value check (callers that checked ``[B]`` float64
        priorities on this device, within one fused check of their own)."""
        n = priorities.shape[0]
        if n > self.capacity:
            raise ValueError(
                f"priorities must hold at most capacity={self.capacity} items per add, got {n} items"
            )
        if n == 0:
            return torch.zeros(0, dtype=torch.long, device=self.device)
        indices = (self._cursor + torch.arange(n, device=self.device)) % self.capacity
        self._write(indices, priorities)
        self._cursor = (self._cursor + n) % self.capacity
        self._size = min(self.capacity, self._size + n)
        return indices

    def update(
        self, indices: torch.Tensor, priorities: torch.Tensor, *, validate: bool | None = None
    ) -> None:
        """Set the priorities of stored items; for repeated indices the last one wins.

        ``validate``: check that the priorities are finite and >= 0 and the indices stored
        (one host synchronisation); None: as ``check_inputs`` says. A caller that has
        checked both itself passes False (see :func:`hetplug.replay.per.validate_update`).
        """
        check_tensor("indices", indices, 1, "integer")
        priorities = self._check_priorities(priorities)
        if indices.shape != priorities.shape:
            raise ValueError(
                f"priorities must have the shape of indices {tuple(indices.shape)}, got priorities of "
                f"shape {tuple(priorities.shape)}"
            )
        indices = indices.to(self.device, torch.long)
        if indices.numel() == 0:
            return
        if self.config.check_inputs if validate is None else validate:
            # One host synchronisation: NaN propagates into the minimum, inf shows in the
            # maximum; only when this fails are the parts checked one by one, to name it.
            lo, hi = torch.aminmax(indices)
            p_lo, p_hi = torch.aminmax(priorities)
            lo, hi, p_lo, p_hi = torch.stack([lo.to(self._dtype), hi.to(self._dtype), p_lo, p_hi]).tolist()
            if not (lo >= 0 and hi < self._size and p_lo >= 0 and p_hi < math.inf):
                check_finite_nonnegative("priorities", priorities)
                self.check_indices(indices)
        self._update(indices, priorities)

    def _update(self, indices: torch.Tensor, priorities: torch.Tensor) -> None:
        """:meth:`update` without checks: ``[B]`` long indices of stored items and finite,
        non-negative float64 priorities, both on this device."""
        n = indices.shape[0]
        if n == 0:
            return
        # The last occurrence of each index wins: the largest position of each index
        # (scatter amax, deterministic on every device) picks the value all of its copies
        # write, so the writes agree whatever their order, and no data-dependent shape (a
        # host synchronisation on a GPU) is needed.
        if self._last is None:
            self._last = torch.zeros(self.capacity, dtype=torch.long, device=self.device)
        if self._positions.shape[0] < n:
            self._positions = torch.arange(n, device=self.device)
        last = self._last.scatter_reduce_(0, indices, self._positions[:n], "amax", include_self=False)
        self._write(indices, priorities.index_select(0, last.index_select(0, indices)))

    def check_indices(self, indices: torch.Tensor) -> None:
        """Raise unless ``indices`` is a 1-D integer tensor (``TypeError``) of stored slots
        (``ValueError``)."""
        check_tensor("indices", indices, 1, "integer")
        if indices.numel() and not bool(((indices >= 0) & (indices < self._size)).all()):
            bad = indices[(indices < 0) | (indices >= self._size)]
            raise ValueError(
                f"indices must lie in [0, {self._size}) (the stored items), got indices={bad[0].item()} "
                f"(range [{int(indices.min())}, {int(indices.max())}])"
            )

    def clear(self) -> None:
        """Forget every item (keeps capacity, config and the beta schedule)."""
        for level in self._sums:
            level.zero_()
        for level in self._mins:
            level.fill_(torch.inf)
        self._priorities.zero_()
        self._size = 0
        self._cursor = 0

    def _check_priorities(self, priorities: torch.Tensor) -> torch.Tensor:
        check_tensor("priorities", priorities, 1, "real")
        return priorities.to(self.device, self._dtype)

    def _write(self, indices: torch.Tensor, priorities: torch.Tensor) -> None:
        """Set ``indices`` (repeated ones with equal priorities) and refresh their ancestors,
        level by level (index_select / index_put_: the cheapest calls for each)."""
        self._priorities.index_put_((indices,), priorities)
        self._max_priority = torch.maximum(self._max_priority, priorities.amax())
        mass = priorities if self.config.alpha == 1 else priorities.pow(self.config.alpha)
        self._sums[0].index_put_((indices,), mass)
        self._mins[0].index_put_((indices,), mass.masked_fill(mass == 0, torch.inf))
        k = self._fanout
        if self.capacity <= self.config.flat_max:  # small tree: rebuild the upper levels whole
            for lvl in range(len(self._sums) - 1):
                parents = self._sums[lvl].numel() // k  # the next level is padded beyond them
                self._sums[lvl + 1][:parents] = self._sums[lvl].view(-1, k).sum(-1)
                self._mins[lvl + 1][:parents] = self._mins[lvl].view(-1, k).amin(-1)
            return
        node = indices
        for lvl in range(len(self._sums) - 1):
            # duplicates write the same value
            node = (
                node.bitwise_right_shift(self._shift)
                if self._shift is not None
                else node.div(k, rounding_mode="floor")
            )
            self._sums[lvl + 1].index_put_((node,), self._sums[lvl].view(-1, k).index_select(0, node).sum(-1))
            self._mins[lvl + 1].index_put_(
                (node,), self._mins[lvl].view(-1, k).index_select(0, node).amin(-1)
            )

    # ------------------------------------------------------------------ reads
    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        replacement: bool = True,
    ) -> SampleResult:
        """Draw ``batch_size`` slots with ``p_i`` proportional to ``P_i^alpha``.

        Returns indices, IS weights ``(N p_i)^-beta`` (normalised as configured) and
        the probabilities. Each call advances the beta schedule by one step.

        Raises:
            ValueError: empty sampler, ``batch_size < 1``, more items than stored without
                replacement, or (with ``check_inputs``) all priorities zero.
        """
        beta = self.beta
        d, probs = self._draw(batch_size, generator, replacement)
        if self.config.weight_normalization == "max":
            # Eq. (7) over the buffer's largest weight: (N p)^-beta / (N p_min)^-beta.
            if probs is None:  # p = mass / total: the total cancels
                weights = (self._mins[-1].amin() / d.mass).pow(beta)
            else:  # no boolean-mask indexing: no GPU sync
                weights = (torch.where(probs > 0, probs, torch.inf).amin() / d.probabilities).pow(beta)
        else:
            weights = (float(self._size) * d.probabilities).pow(-beta)
            if self.config.weight_normalization == "batch":
                weights = weights / weights.max()
        return SampleResult(indices=d.indices, weights=weights, probabilities=d.probabilities)

    def draw(
        self, batch_size: int, generator: torch.Generator | None = None, replacement: bool = True
    ) -> Draw:
        """The draw of :meth:`sample` without the IS weights (for a caller that weights on
        its own, as SHEP does per episode); advances the beta schedule the same way."""
        return self._draw(batch_size, generator, replacement)[0]

    def _draw(
        self, batch_size: int, generator: torch.Generator | None, replacement: bool
    ) -> tuple[Draw, torch.Tensor | None]:
        """The draw, and every stored item's probability when the draw needed them (clipped
        probabilities, or drawing without replacement); else None and ``p = mass / total``."""
        check_int("batch_size", batch_size, 1)
        check_generator("generator", generator)
        check_bool("replacement", replacement)
        if self._size == 0:
            raise ValueError("cannot sample from an empty sampler (add items first)")
        if not replacement and batch_size > self._size:
            raise ValueError(
                f"batch_size={batch_size} exceeds the {self._size} stored items (sampling without replacement)"
            )
        self._sample_calls += 1
        flat = self.capacity <= self.config.flat_max
        if flat:
            mass_all = self._sums[0][: self._size]
            cum = mass_all.cumsum(0)
            total = cum[-1]
        else:
            cum = self._sums[-1].cumsum(0)  # the top level, scanned flat
            total = cum[-1]
        if self.config.check_inputs and not total.item() > 0:
            self._sample_calls -= 1
            raise ValueError("cannot sample: every stored priority is zero")
        if self.config.max_probability is not None or not replacement:
            probs = self.probabilities()
            indices = torch.multinomial(
                probs.float() if probs.device.type == "mps" else probs,
                batch_size,
                replacement=replacement,
                generator=generator,
            )
            return Draw(indices, probs[indices], self._sums[0][indices]), probs
        if flat:
            u = torch.rand(batch_size, generator=generator, device=self.device, dtype=self._dtype) * total
            # u below the total (rounding can put it at the very end): never past the last
            # item with mass, never on an item without (its cumulative sum equals the one before).
            u = torch.minimum(u, torch.nextafter(total, self._zero))
            indices = torch.searchsorted(cum, u, right=True).clamp_max(self._size - 1)
            mass = mass_all[indices]
        else:
            indices, mass = self._descend(batch_size, cum, generator)
        return Draw(indices, mass / total, mass), None

    def _descend(
        self, batch_size: int, cum: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Leaves drawn by a walk down the sum tree, and their masses: ``([B], [B])``.

        The top level is scanned flat (one cumsum over it, shared by the batch); each level
        below is about nine ops on ``[B, fanout]`` rows. At each step u is kept in
        ``[0, mass below)``: rounding (a parent's sum and its children's cumulative sum can
        differ in the last bit) can neither step past the last child with mass nor land on
        an empty child.
        """
        k = self._fanout
        top = self._sums[-1]
        total = cum[-1]
        u = torch.rand(batch_size, generator=generator, device=self.device, dtype=self._dtype).mul_(total)
        u = u.clamp_(self._zero, torch.nextafter(total, self._zero))
        node = torch.searchsorted(cum, u, right=True)
        if len(self._sums) == 1:  # the top level holds the leaves
            return node, top.index_select(0, node)
        u = u.sub_(cum.sub(top).index_select(0, node))  # minus the mass before the node
        for lvl in range(len(self._sums) - 2, -1, -1):
            children = self._sums[lvl].view(-1, k).index_select(0, node)  # [B, k]
            cum = children.cumsum(-1)
            u = u.clamp_(self._zero, torch.nextafter(cum.select(1, -1), self._zero))
            choice = torch.searchsorted(cum, u.unsqueeze(-1), right=True)  # [B, 1]
            if lvl:
                u = u.sub_(cum.sub_(children).gather(-1, choice).squeeze(-1))
            else:
                mass = children.gather(-1, choice).squeeze(-1)
            node = choice.squeeze(-1).add_(node, alpha=k)  # (after the gathers: choice changes)
        return node, mass

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "config": dict(self.config.__dict__),
            "priorities": self._priorities.clone(),
            "max_priority": self._max_priority.clone(),
            "size": self._size,
            "cursor": self._cursor,
            "sample_calls": self._sample_calls,
            # as it is held: a 0-d device tensor (set_progress without a sync) stays one
            "progress": self._progress.clone()
            if isinstance(self._progress, torch.Tensor)
            else self._progress,
        }

    def check_state(self, state: Any) -> dict[str, Any]:
        """Validate a :meth:`state_dict` for this sampler without changing anything; returns
        what :meth:`load_state_dict` assigns. Errors name the key and what was expected."""
        where = "sampler"
        require_keys(where, state, STATE_KEYS)
        state_equal(where, state, "capacity", self.capacity, "sampler")
        config = config_from_dict(SamplerConfig, state["config"], "sampler state['config']")
        priorities = state_tensor(where, state, "priorities", [self.capacity], check="finite_nonnegative")
        max_priority = state_tensor(where, state, "max_priority", [], check="finite_nonnegative")
        size = state_int(where, state, "size", 0, self.capacity)
        cursor = state_int(where, state, "cursor", 0, self.capacity - 1)
        if size < self.capacity and cursor != size:
            raise ValueError(
                f"sampler state['cursor'] must equal size={size} until the ring is full, got "
                f"sampler state['cursor']={cursor}"
            )
        sample_calls = state_int(where, state, "sample_calls", 0)
        progress = state.get("progress", 0.0)
        if isinstance(progress, torch.Tensor):
            check_tensor("sampler state['progress']", progress, 0, "real")
            check_range("sampler state['progress']", float(progress), 0.0, 1.0)
            progress = progress.to(self.device, self._dtype).clone()
        else:
            check_range("sampler state['progress']", progress, 0.0, 1.0)
            progress = float(progress)
        return {
            "config": config,
            "priorities": priorities.to(self.device, self._dtype),
            "max_priority": max_priority.to(self.device, self._dtype).clone(),
            "size": size,
            "cursor": cursor,
            "sample_calls": sample_calls,
            "progress": progress,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; validated whole first (on error nothing changes)."""
        self._assign_state(self.check_state(state))

    def _assign_state(self, new: dict[str, Any]) -> None:
        """Assign what :meth:`check_state` returned (cannot fail)."""
        self.config = new["config"]
        self._build_trees()  # the saved config may have another fan-out
        self.clear()
        self._size = new["size"]
        if self._size:
            self._write(torch.arange(self._size, device=self.device), new["priorities"][: self._size])
        self._max_priority = new["max_priority"]
        self._cursor = new["cursor"]
        self._sample_calls = new["sample_calls"]
        self._progress = new["progress"]


def _clip_probabilities(mass: torch.Tensor, cap: float) -> torch.Tensor:
    """Probabilities proportional to ``mass`` with each capped at ``cap`` (water-filling).

    The clipped items take exactly ``cap``; the rest share ``1 - k cap`` in proportion to
    their mass. If ``cap`` is below 1/(number of positive items) the cap cannot be met
    and the result is uniform over the positive items.
    """
    positive = mass > 0
    n_pos = positive.sum()
    s, order = torch.sort(mass, descending=True)
    # rest[k] = sum of s[k:], the mass left when the k largest are clipped.
    rest = s.flip(0).cumsum(0).flip(0)
    k = torch.arange(mass.shape[0], device=mass.device, dtype=mass.dtype)
    share = 1.0 - k * cap
    # With the k largest clipped, item k gets s[k] * share / rest[k]; feasible when <= cap.
    feasible = (share > 0) & (s * share <= cap * rest)
    first = feasible.to(torch.uint8).argmax()
    uniform = positive.to(mass.dtype) / n_pos.clamp_min(1)
    clipped_count = first.to(mass.dtype)
    scale = (1.0 - clipped_count * cap) / rest[first].clamp_min(torch.finfo(mass.dtype).tiny)
    probs_sorted = torch.where(k < clipped_count, torch.full_like(s, cap), s * scale)
    probs = torch.empty_like(mass).scatter_(0, order, probs_sorted)
    return torch.where(feasible.any() & (n_pos * cap >= 1), probs, uniform)
