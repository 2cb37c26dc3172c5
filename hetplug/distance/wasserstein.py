"""2-Wasserstein distance between diagonal Gaussians (HetDPS section 4, Appendix E).

For N(mu1, diag(s1^2)) and N(mu2, diag(s2^2)) the general formula
W2^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S2^1/2 S1 S2^1/2)^1/2) reduces, because diagonal
covariances commute, to |mu1 - mu2|^2 + |s1 - s2|^2: the Euclidean distance between the
stacked vectors (mu, s). All pairs therefore come from one ``cdist``.
"""

from __future__ import annotations

import torch

from hetplug._checks import check_tensor


def _check_gaussian(name: str, mu: torch.Tensor, sigma: torch.Tensor) -> None:
    check_tensor(f"mu{name}", mu)
    check_tensor(f"sigma{name}", sigma)
    if mu.dim() == 0 or mu.shape[-1] != sigma.shape[-1]:
        raise ValueError(
            f"mu{name} and sigma{name} must share their last (latent) dim, got {tuple(mu.shape)} and {tuple(sigma.shape)}"
        )
    if bool((sigma < 0).any()) or not bool(torch.isfinite(sigma).all()) or not bool(torch.isfinite(mu).all()):
        raise ValueError(
            f"sigma{name} must be finite and >= 0 and mu{name} finite (standard deviations, not log-variances)"
        )


def gaussian_w2(
    mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor
) -> torch.Tensor:
    """W2 between diagonal Gaussians given by means and standard deviations ``[..., Z]`` (broadcast) -> ``[...]``."""
    _check_gaussian("1", mu1, sigma1)
    _check_gaussian("2", mu2, sigma2)
    if mu1.shape[-1] != mu2.shape[-1]:
        raise ValueError(f"the two Gaussians have {mu1.shape[-1]} and {mu2.shape[-1]} dims")
    return ((mu1 - mu2).square().sum(-1) + (sigma1 - sigma2).square().sum(-1)).sqrt()


def pairwise_gaussian_w2(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """All-pairs W2 ``[..., N, N]`` for N diagonal Gaussians ``mu, sigma [..., N, Z]``.

    One batched computation; the result is symmetric with an exactly zero diagonal.
    """
    _check_gaussian("", mu, sigma)
    if mu.shape != sigma.shape or mu.dim() < 2:
        raise ValueError(
            f"mu and sigma must both be [..., N, Z], got {tuple(mu.shape)} and {tuple(sigma.shape)}"
        )
    z = torch.cat([mu, sigma], -1)
    d = torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist")
    d = 0.5 * (d + d.transpose(-1, -2))
    return d * (1 - torch.eye(d.shape[-1], dtype=d.dtype, device=d.device))


def mean_pairwise_gaussian_w2(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``[N, N]`` mean over S of the all-pairs W2 of ``mu, sigma [S, N, Z]`` (eq. 3's Monte Carlo).

    Samples are processed in blocks of about 2^24 pair entries, so memory stays bounded
    for large N; pairs are never looped over.
    """
    s, n = mu.shape[:2]
    step = max(1, min(s, (1 << 24) // (n * n)))
    total = mu.new_zeros(n, n)
    for start in range(0, s, step):
        total += pairwise_gaussian_w2(mu[start : start + step], sigma[start : start + step]).sum(0)
    return total / s
