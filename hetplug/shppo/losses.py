"""SHPPO's latent losses, eqs. (6)-(12) of ../shared/papers/shppo.txt.

L_L = -L_v + lambda_e L_e - lambda_d L_d   (eq. 10, minimised by the LatentNet)
L_I = MSE(V_I(o_g, mu, sigma), R)           (eqs. 11-12, minimised by the InferenceNet)

L_v is computed with the InferenceNet's parameters detached (the paper: "the parameters of
the InferenceNet are fixed"), so its gradient reaches only the LatentNet; L_I sees mu and
sigma detached, so its gradient reaches only the InferenceNet.
"""

from __future__ import annotations

import math

import torch
from torch import nn

NORM_EPS = 1e-12  # eq. (9)


def entropy_loss(sigma: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """L_e, eq. (7): mean over agents (and valid rows) of H(N(mu_i, diag sigma_i^2)).

    The entropy of a diagonal Gaussian is sum_k (0.5 log(2 pi e) + log sigma_k).
    """
    h = (0.5 * math.log(2 * math.pi * math.e) + sigma.log()).sum(-1).mean(-1)  # [...]
    return _masked_mean(h, mask)


def distance_loss(latent: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """L_d, eqs. (8)-(9): per team, the mean over ordered pairs i != j of Norm(1 - cos(l_i, l_j)).

    Norm is min-max over the team's n(n-1) distances with 1e-12 in the denominator, so equal
    distances give 0 (not NaN). With n = 1 there is no pair and L_d is defined as 0.
    ``latent`` is ``[..., n, L]``; the result averages the teams (valid rows of ``mask``).
    """
    if latent.dim() < 2:
        raise ValueError(f"latent must be [..., n, L], got shape {tuple(latent.shape)}")
    n = latent.shape[-2]
    if n < 2:
        return latent.sum() * 0.0  # defined value for a single agent, keeps the graph
    unit = nn.functional.normalize(latent, dim=-1, eps=1e-12)
    dist = 1.0 - unit @ unit.transpose(-1, -2)  # [..., n, n]
    off = ~torch.eye(n, dtype=torch.bool, device=latent.device)
    d = dist[..., off]  # [..., n(n-1)]
    lo = d.amin(-1, keepdim=True)
    hi = d.amax(-1, keepdim=True)
    normed = (d - lo) / (hi - lo + NORM_EPS)
    return _masked_mean(normed.mean(-1), mask)


def frozen_value(
    inference: nn.Module, global_obs: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """V_I with the InferenceNet's parameters treated as constants (eq. 6)."""
    params = {k: v.detach() for k, v in inference.named_parameters()}
    buffers = dict(inference.named_buffers())
    return torch.func.functional_call(inference, {**params, **buffers}, (global_obs, mu, sigma))


def latent_loss(
    inference: nn.Module,
    global_obs: torch.Tensor,
    mu: torch.Tensor,
    sigma: torch.Tensor,
    latent: torch.Tensor,
    lambda_e: float = 0.01,
    lambda_d: float = 0.1,
    mask: torch.Tensor | None = None,
    use_value: bool = True,
    use_entropy: bool = True,
    use_distance: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_L of eq. (10) and its terms (detached, for logging). The ``use_*`` switches are the
    loss ablations of section V-E."""
    zero = mu.sum() * 0.0
    l_v = _masked_mean(frozen_value(inference, global_obs, mu, sigma), mask) if use_value else zero
    l_e = entropy_loss(sigma, mask) if use_entropy else zero
    l_d = distance_loss(latent, mask) if use_distance else zero
    total = -l_v + lambda_e * l_e - lambda_d * l_d
    terms = {"latent_loss": total, "value": l_v, "entropy": l_e, "distance": l_d}
    return total, {k: v.detach() for k, v in terms.items()}


def inference_loss(
    inference: nn.Module,
    global_obs: torch.Tensor,
    mu: torch.Tensor,
    sigma: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_I, eqs. (11)-(12): MSE between V_I(o_g, mu, sigma) and the return R (mu, sigma detached)."""
    v = inference(global_obs, mu.detach(), sigma.detach())
    return _masked_mean((v - returns).pow(2), mask)


def discounted_returns(
    reward: torch.Tensor, mask: torch.Tensor, gamma: float, done: torch.Tensor | None = None
) -> torch.Tensor:
    """Reward-to-go ``[B, T]`` of team rewards ``[B, T]`` (or per-agent ones, averaged), within valid steps."""
    r = reward.mean(-1) if reward.dim() == 3 else reward
    r = r * mask.to(r.dtype)
    keep = torch.ones_like(r) if done is None else 1.0 - done.to(r.dtype)
    out = torch.zeros_like(r)
    running = torch.zeros_like(r[:, 0])
    for t in range(r.shape[1] - 1, -1, -1):  # over time, batched over trajectories
        running = r[:, t] + gamma * running * keep[:, t]
        out[:, t] = running
    return out


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype).expand_as(x)
    return (x * m).sum() / m.sum().clamp_min(1.0)
