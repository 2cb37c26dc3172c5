"""2-Wasserstein distance between diagonal Gaussians (HetDPS section 4, Appendix E).

For N(mu1, diag(s1^2)) and N(mu2, diag(s2^2)) the general formula
W2^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S2^1/2 S1 S2^1/2)^1/2) reduces, because diagonal
covariances commute, to |mu1 - mu2|^2 + |s1 - s2|^2: the Euclidean distance between the
stacked vectors (mu, s). ``pairwise_gaussian_w2`` takes the direct differences (``cdist``);
``mean_pairwise_gaussian_w2``, the N = 1000 workhorse, expands the square into matrix
products.
"""

from __future__ import annotations

import torch

from hetplug._checks import check_tensor, check_values


def _check_gaussian(name: str, mu: torch.Tensor, sigma: torch.Tensor) -> None:
    check_tensor(f"mu{name}", mu, dtype="floating")
    check_tensor(f"sigma{name}", sigma, dtype="floating")
    if mu.dim() == 0 or sigma.dim() == 0 or mu.shape[-1] != sigma.shape[-1]:
        raise ValueError(
            f"sigma{name} must share the last (latent) dim of mu{name} {tuple(mu.shape)}, got sigma{name} "
            f"of shape {tuple(sigma.shape)}"
        )
    # standard deviations, not log-variances: >= 0
    check_values([(f"mu{name}", mu, "finite", None), (f"sigma{name}", sigma, "finite_nonnegative", None)])


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


def _panel_sizes(n: int, s: int, device: torch.device) -> tuple[int, int]:
    """``(rows per panel, samples per block)``: on the CPU ``[block, 64, N]`` blocks of about
    2^20 entries (4 MB in float32); elsewhere all rows, blocks of about 2^24 entries."""
    rows, budget = (min(n, 64), 1 << 20) if device.type == "cpu" else (n, 1 << 24)
    return rows, max(1, min(s, budget // (rows * n)))


def _identical_agents(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor | None:
    """``[N, N]`` bool: agents whose ``(mu, sigma) [S, N, Z]`` are equal at every sample, or
    None when no two agents share even their first sample's Gaussian (the usual case).

    Candidates share their first sample's Gaussian (``unique``); a candidate counts when it
    equals its group's first agent at every sample (one comparison, no pair loop).
    """
    n = mu.shape[1]
    _, group, counts = torch.unique(
        torch.cat([mu[0], sigma[0]], -1), dim=0, return_inverse=True, return_counts=True
    )
    if counts.numel() == n:
        return None
    rep = torch.full((n,), n, dtype=torch.long, device=mu.device)
    rep = rep.scatter_reduce(0, group, torch.arange(n, device=mu.device), "amin")[group]
    same = (mu == mu[:, rep]).all(-1).all(0) & (sigma == sigma[:, rep]).all(-1).all(0)
    return (rep.unsqueeze(1) == rep.unsqueeze(0)) & same.unsqueeze(1) & same.unsqueeze(0)


def mean_pairwise_gaussian_w2(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``[N, N]`` mean over S of the all-pairs W2 of ``mu, sigma [S, N, Z]`` (eq. 3's Monte Carlo).

    With ``v = (mu, sigma)`` centred over the agents at each sample (W2 is translation
    invariant), ``W2_ij^2 = |v_i|^2 + |v_j|^2 - 2 v_i . v_j`` (the diagonal closed form
    above, Appendix E) comes from one batched matrix product of the augmented vectors
    ``[v_i, |v_i|^2, 1] . [-2 v_j, 1, |v_j|^2]`` per block of samples and panel of rows
    (on the CPU 64 rows, so a block stays in cache); only entries on and above the
    diagonal's panel are computed, and the result is mirrored. No Python loop runs over
    pairs or single agents.

    Against the direct differences of :func:`pairwise_gaussian_w2` the products lose a
    little precision where two Gaussians nearly coincide: the difference stays within
    ``1e-5 (1 + max d)`` in float32 (tests/test_hetdps_distance.py holds it to the old
    formula). Agents whose Gaussians are equal at every sample get exactly 0, like the
    diagonal.
    """
    check_tensor("mu", mu, 3, "floating")
    check_tensor("sigma", sigma, 3, "floating")
    if mu.shape != sigma.shape:
        raise ValueError(
            f"mu and sigma must both be [S, N, Z], got {tuple(mu.shape)} and {tuple(sigma.shape)}"
        )
    # One pass each (the sums are finite iff every entry is, barring overflow); the full
    # check names the problem. NaN must be caught here: the W2 sum below skips NaN.
    if not bool(torch.isfinite(mu.sum() + sigma.sum()) & (sigma.amin() >= 0)):
        _check_gaussian("", mu, sigma)
    s, n, z = mu.shape
    panel, block = _panel_sizes(n, s, mu.device)
    total = mu.new_zeros(n, n)
    buffer = mu.new_empty(block * panel * n)
    row_sum = mu.new_empty(panel * n)
    # [v, |v|^2, 1] and [-2 v, 1, |v|^2]^T of a block of samples, written in place.
    left = mu.new_empty(block, n, 2 * z + 2)
    right = mu.new_empty(block, 2 * z + 2, n)
    for s0 in range(0, s, block):
        b = min(block, s - s0)
        lhs, rhs = left[:b], right[:b]
        v = lhs[..., : 2 * z]
        torch.cat([mu[s0 : s0 + b], sigma[s0 : s0 + b]], -1, out=v)
        v.sub_(v.mean(1, keepdim=True))
        torch.sum(v.square(), -1, out=lhs[..., 2 * z])
        lhs[..., 2 * z + 1] = 1
        torch.mul(v.transpose(1, 2), -2, out=rhs[:, : 2 * z])
        rhs[:, 2 * z] = 1
        rhs[:, 2 * z + 1] = lhs[..., 2 * z]
        for i in range(0, n, panel):  # rows i..i+panel against the columns from i on
            rows, cols = min(panel, n - i), n - i
            d2 = buffer[: b * rows * cols].view(b, rows, cols)
            torch.bmm(lhs[:, i : i + rows], rhs[:, :, i:], out=d2)
            # Rounding can leave a coinciding pair slightly below 0, whose root is NaN: the
            # NaN-skipping sum counts it as 0 (a clamp would cost one more pass).
            acc = row_sum[: rows * cols].view(rows, cols)
            torch.nansum(d2.sqrt_(), 0, out=acc)
            total[i : i + rows, i:] += acc
    upper = total.triu(1)
    d = (upper + upper.T) / s
    identical = _identical_agents(mu, sigma)
    return d if identical is None else d.masked_fill_(identical, 0.0)
