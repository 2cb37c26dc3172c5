"""Policy heterogeneity distance, eq. (16): d_ij = E_o[ D(pi_i(.|o), pi_j(.|o)) ].

The host evaluates every agent's policy on the same observations ``o`` (S samples, for
example drawn from the agents' recent observations) and passes the distribution
parameters; the expectation is the Monte-Carlo mean over the S samples. No CVAE is
needed because the policies are known.
"""

from __future__ import annotations

import torch

from hetplug._checks import check_tensor
from hetplug.distance.wasserstein import mean_pairwise_gaussian_w2


def _chunks(s: int, n: int, budget: int = 1 << 24) -> int:
    """How many of S samples fit in one ``[s, N, N]`` block of about ``budget`` elements."""
    return max(1, min(s, budget // max(1, n * n)))


def gaussian_policy_distance(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``[N, N]`` mean W2 between diagonal-Gaussian policies ``mu, sigma [S, N, A]``."""
    check_tensor("mu", mu, 3)
    check_tensor("sigma", sigma, 3)
    if mu.shape != sigma.shape:
        raise ValueError(
            f"mu and sigma must have the same [S, N, A] shape, got {tuple(mu.shape)} and {tuple(sigma.shape)}"
        )
    return mean_pairwise_gaussian_w2(mu, sigma)


def categorical_policy_distance(probs: torch.Tensor) -> torch.Tensor:
    """``[N, N]`` mean total-variation distance between categorical policies ``probs [S, N, A]``.

    TV(p, q) = 0.5 * sum_a |p_a - q_a| is a metric in [0, 1], so the distance keeps the
    properties of Appendix E (symmetry, non-negativity, triangle inequality).
    """
    check_tensor("probs", probs, 3)
    if not bool(torch.isfinite(probs).all()) or bool((probs < 0).any()):
        raise ValueError("probs must be finite and >= 0 (probabilities, not logits; use logits.softmax(-1))")
    s, n = probs.shape[:2]
    step = _chunks(s, n)
    total = probs.new_zeros(n, n)
    for start in range(0, s, step):
        p = probs[start : start + step]
        total += 0.5 * torch.cdist(p, p, p=1).sum(0)
    d = total / s
    return 0.5 * (d + d.T) * (1 - torch.eye(n, dtype=d.dtype, device=d.device))
