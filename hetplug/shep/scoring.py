"""SHEP's situation score, advantage, priorities and intrinsic reward (eqs. 3-6, Alg. 1).

Pure functions over ``[B, T]`` tensors (any leading dims before T), no host syncs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from hetplug.spatial import CellPartition, action_diversity_entropy, morans_i, occupancy_entropy


class Descriptors(NamedTuple):
    """The spatial heterogeneity descriptors of one group, each ``[..., T]``."""

    occupancy_entropy: torch.Tensor
    action_diversity: torch.Tensor
    moran: torch.Tensor


def describe(
    cells: CellPartition,
    positions: torch.Tensor,
    *,
    alive: torch.Tensor | None = None,
    actions: torch.Tensor | None = None,
    n_actions: int | None = None,
    transformation: str = "r",
    normalize: bool = False,
) -> Descriptors:
    """H_occ (eq. 1), H_div and Moran's I (eq. 2) of a group at every step.

    Args:
        positions: ``[..., N, D]`` positions (e.g. ``[B, T, N, D]``).
        alive: ``[..., N]`` mask of agents in play.
        actions: ``[..., N]`` discrete actions; None gives H_div = 0.
        n_actions: number of discrete actions (required with ``actions``).
    """
    density = cells.density(positions, alive)
    h_occ = occupancy_entropy(density, normalize=normalize)
    moran = morans_i(density, cells.weights, transformation)
    if actions is None:
        h_div = torch.zeros_like(h_occ)
    else:
        if n_actions is None:
            raise ValueError("n_actions is required to compute action diversity")
        h_div = action_diversity_entropy(actions, n_actions, alive=alive, normalize=normalize).to(h_occ.dtype)
    return Descriptors(h_occ, h_div, moran)


def situation_score(d: Descriptors, alpha: float, beta: float, eta: float) -> torch.Tensor:
    """Eq. (3): E(t) = alpha H_occ(t) + beta H_div(t) + eta I(t)."""
    return alpha * d.occupancy_entropy + beta * d.action_diversity + eta * d.moran


def advantage(score_self: torch.Tensor, score_opp: torch.Tensor | None, kappa: float) -> torch.Tensor:
    """Eq. (4): delta(t) = kappa [E_self(t) - E_opp(t)], with E_opp = 0 without opponents."""
    if score_opp is None:
        return kappa * score_self
    return kappa * (score_self - score_opp)


def temporal_change(x: torch.Tensor, window: int = 1) -> torch.Tensor:
    """``x(t) - mean(x(t-window) .. x(t-1))`` along the last dim; 0 at t = 0.

    Near the start the window shrinks to the steps available. ``window=1`` is the change
    from the previous step (Delta delta(t) in eq. 5, Delta E(t) in Algorithm 1 line 8).
    """
    t = x.shape[-1]
    csum = torch.nn.functional.pad(x.cumsum(-1), (1, 0))  # csum[..., k] = sum x[..., :k]
    steps = torch.arange(t, device=x.device)
    start = (steps - window).clamp_min(0)
    count = (steps - start).clamp_min(1).to(x.dtype)
    past_mean = (csum[..., steps] - csum[..., start]) / count
    return torch.where(steps > 0, x - past_mean, torch.zeros_like(x))


def step_priority(
    td_abs: torch.Tensor,
    advantage_change: torch.Tensor,
    moran: torch.Tensor,
    *,
    td_exponent: float = 0.6,
    lambda_delta: float = 1.0,
    lambda_moran: float = 1.0,
    form: str = "sum",
) -> torch.Tensor:
    """The per-step semantic priority P~(s_t, a_t).

    ``form="sum"`` is eq. (5): ``|TD|^a + l_D |Dd| + l_I max(0, I)``;
    ``form="product"`` is Algorithm 1 line 20: ``|TD|^a * (l_D |Dd| + l_I max(0, I))``.
    """
    value = td_abs.abs().pow(td_exponent)
    tactical = lambda_delta * advantage_change.abs() + lambda_moran * moran.clamp_min(0)
    if form == "sum":
        return value + tactical
    if form == "product":
        return value * tactical
    raise ValueError(f"form must be 'sum' or 'product', got form={form!r}")


def trajectory_priority(step_priorities: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """P-bar_tau = E_t[P~] over the valid steps of each trajectory (section 4.3); 0 if none."""
    if mask is None:
        return step_priorities.mean(-1)
    m = mask.to(step_priorities.dtype)
    return (step_priorities * m).sum(-1) / m.sum(-1).clamp_min(1.0)


def intrinsic_reward(
    score: torch.Tensor, moran: torch.Tensor, coef_delta: float, coef_moran: float
) -> torch.Tensor:
    """Algorithm 1 line 8: r_int(t) = beta_t Delta E(t) + eta_t I(t) (Delta E(0) = 0)."""
    return coef_delta * temporal_change(score, 1) + coef_moran * moran


def reduce_td(td_error: torch.Tensor, steps: int) -> torch.Tensor:
    """``|TD|`` as ``[B, steps]``: mean over agents for ``[B, T, N]``, zero-padded in time."""
    if td_error.dim() == 3:
        td_error = td_error.abs().mean(-1)
    elif td_error.dim() == 2:
        td_error = td_error.abs()
    else:
        raise ValueError(f"td_error must be [B, T] or [B, T, N], got shape {tuple(td_error.shape)}")
    if td_error.shape[1] > steps:
        raise ValueError(f"td_error has {td_error.shape[1]} steps, more than max_steps={steps}")
    return torch.nn.functional.pad(td_error, (0, steps - td_error.shape[1]))
