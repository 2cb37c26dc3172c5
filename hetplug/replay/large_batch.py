"""Down-sampling a large batch by priority (LBS section 3; LaBER, Lahire et al. 2022).

From K candidate items with priorities P_k (e.g. |TD|, or min(|TD|, 1) for Huber), draw B
items with replacement with p_k = P_k / sum_j P_j and weight them so that the weighted
mini-batch gradient is an unbiased estimate of the large-batch mean gradient.
"""

from __future__ import annotations

import torch

from hetplug._checks import (
    check_bool,
    check_choice,
    check_generator,
    check_int,
    check_mask,
    check_tensor,
    check_values,
)

WEIGHTINGS = ("mean", "lazy", "max")


def large_batch_select(
    priorities: torch.Tensor,
    batch_size: int,
    weighting: str = "mean",
    generator: torch.Generator | None = None,
    mask: torch.Tensor | None = None,
    check_inputs: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``batch_size`` of the K items with probability proportional to ``priorities``.

    Args:
        priorities: ``[K]``, or ``[M, K]`` for M agents selecting at once (one draw per
            row). Non-negative, finite, with at least one positive entry per row.
        batch_size: B, the mini-batch size.
        weighting: LaBER's normalisations of the importance weights, with P the priorities:
            ``"mean"``: ``w = mean(P) / P_i = 1 / (K p_i)`` (LBS's w_k, unbiased);
            ``"lazy"``: ``w = 1 / P_i``; ``"max"``: lazy weights divided by their maximum
            over the mini-batch.
        generator: for reproducible draws.
        mask: optional bool tensor shaped like ``priorities``; False items are excluded
            (LBS's communication budget). Then K in ``mean`` is the number of allowed
            items in the row, so the estimate is unbiased for the allowed items' mean.
        check_inputs: validate the priorities (one host synchronisation). Callers that
            already guarantee finite, non-negative rows with a positive entry pass False.

    Returns:
        ``(indices, weights)``, each ``[B]`` (or ``[M, B]``).
    """
    check_tensor("priorities", priorities, (1, 2), "real")
    check_int("batch_size", batch_size, 1)
    check_choice("weighting", weighting, WEIGHTINGS)
    check_generator("generator", generator)
    check_bool("check_inputs", check_inputs)
    if priorities.shape[-1] == 0:
        raise ValueError(
            f"priorities must hold at least one item (K >= 1), got priorities of shape {tuple(priorities.shape)}"
        )
    p = priorities.detach().to(torch.float64)
    if mask is not None:
        mask = check_mask("mask", mask, tuple(p.shape)).to(p.device)
        p = torch.where(mask, p, torch.zeros((), dtype=p.dtype, device=p.device))
    if check_inputs and not bool(torch.isfinite(p).all() & (p >= 0).all() & (p.sum(-1) > 0).all()):
        check_values([("priorities", priorities, "finite_nonnegative", None)])
        rows = (p.sum(-1) > 0).reshape(-1)
        raise ValueError(
            "priorities must have a positive entry (not masked) in every row, got row "
            f"{int((~rows).nonzero()[0])} all zero: nothing can be drawn from it"
        )
    indices, weights, _ = draw_with_weights(p, batch_size, weighting, generator, mask)
    return indices, weights.to(priorities.dtype if priorities.is_floating_point() else torch.float32)


def draw_with_weights(
    p: torch.Tensor,
    batch_size: int,
    weighting: str,
    generator: torch.Generator | None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The unchecked core of :func:`large_batch_select` on float priorities ``p [M, K]`` with
    masked items already zeroed: ``(indices, weights, probabilities)``, each ``[M, B]``."""
    indices = torch.multinomial(p, batch_size, replacement=True, generator=generator)
    chosen = p.gather(-1, indices)
    total = p.sum(-1, keepdim=True)
    if weighting == "mean":
        # LBS's w_k = 1 / (K p2_k) = mean(P) / P_k (LaBER's "mean" normalisation).
        allowed = p.shape[-1] if mask is None else mask.sum(-1, keepdim=True).to(p.dtype)
        weights = total / allowed / chosen
    else:
        weights = 1.0 / chosen
        if weighting == "max":
            weights = weights / weights.amax(-1, keepdim=True)
    return indices, weights, chosen / total
