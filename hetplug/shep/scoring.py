"""SHEP's situation score, advantage, priorities and intrinsic reward (eqs. 3-6, Alg. 1).

Pure functions over ``[B, T]`` tensors (any leading dims before T), no host syncs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from hetplug._checks import check_bool, check_choice, check_int, check_tensor, check_values
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
    check: bool = True,
) -> Descriptors:
    """H_occ (eq. 1), H_div and Moran's I (eq. 2) of a group at every step.

    Args:
        positions: ``[..., N, D]`` positions (e.g. ``[B, T, N, D]``).
        alive: ``[..., N]`` mask of agents in play (or non-negative weights).
        actions: ``[..., N]`` discrete actions; None gives H_div = 0.
        n_actions: number of discrete actions (required with ``actions``).
        check: refuse NaN or inf positions, actions outside ``[0, n_actions)`` and
            negative ``alive`` weights, in one host synchronisation; False for callers that
            validated them (the ``shep`` plugin, under its ``check_inputs``).
    """
    if not isinstance(cells, CellPartition):
        raise TypeError(f"cells must be a hetplug.spatial.CellPartition, got cells={type(cells).__name__}")
    check_tensor("positions", positions, dtype="real")
    check_choice("transformation", transformation, ("r", "b", "o"))
    check_bool("normalize", normalize)
    if actions is not None:
        if n_actions is None:
            raise ValueError("n_actions is required to compute action diversity, got n_actions=None")
        check_int("n_actions", n_actions, 1)
        check_tensor("actions", actions, dtype="integer")
    if check:
        check_values(
            [
                ("positions", positions, "finite", None),
                ("alive", alive, "finite_nonnegative", None),
                ("actions", actions, "below", n_actions),
            ]
        )
    density = cells.density(positions, alive, check=False)
    h_occ = occupancy_entropy(density, normalize=normalize, check=False)
    moran = morans_i(density, cells.weights, transformation, check=False)
    if actions is None:
        h_div = torch.zeros_like(h_occ)
    else:
        h_div = action_diversity_entropy(actions, n_actions, alive=alive, normalize=normalize, check=False)
        h_div = h_div.to(h_occ.dtype)
    return Descriptors(h_occ, h_div, moran)


def situation_score(d: Descriptors, alpha: float, beta: float, eta: float) -> torch.Tensor:
    """Eq. (3): E(t) = alpha H_occ(t) + beta H_div(t) + eta I(t)."""
    return alpha * d.occupancy_entropy + beta * d.action_diversity + eta * d.moran


def advantage(score_self: torch.Tensor, score_opp: torch.Tensor | None, kappa: float) -> torch.Tensor:
    """Eq. (4): delta(t) = kappa [E_self(t) - E_opp(t)], with E_opp = 0 without opponents."""
    if score_opp is None:
        return kappa * score_self
    return kappa * (score_self - score_opp)


def temporal_change(x: torch.Tensor, window: int = 1, start: torch.Tensor | None = None) -> torch.Tensor:
    """``x(t) - mean(x(t-window) .. x(t-1))`` along the last dim; 0 at each episode's first step.

    Near an episode's start the window shrinks to the steps available. ``window=1`` is the
    change from the previous step (Delta delta(t) in eq. 5, Delta E(t) in Algorithm 1 line 8),
    computed as a plain difference. ``start`` (``[..., T]``, :func:`~hetplug.shep.episodes.episode_start`)
    keeps the window inside each step's episode; None: the whole row is one episode.
    """
    t = x.shape[-1]
    steps = torch.arange(t, device=x.device)
    lo = (steps - window).clamp_min(0)
    if start is not None:
        lo = torch.maximum(lo, start)
    count = steps - lo  # steps in the window; 0 at an episode's first step
    if window == 1:
        previous = torch.nn.functional.pad(x[..., :-1], (1, 0))
        return torch.where(count > 0, x - previous, torch.zeros_like(x))
    csum = torch.nn.functional.pad(x.cumsum(-1), (1, 0))  # csum[..., k] = sum x[..., :k]
    lo_sum = csum.gather(-1, lo.expand_as(x)) if start is not None else csum[..., lo]
    past_mean = (csum[..., :-1] - lo_sum) / count.clamp_min(1).to(x.dtype)
    return torch.where(count > 0, x - past_mean, torch.zeros_like(x))


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


class EpisodeMasses(NamedTuple):
    """Sampling masses of the episodes stored in rows (eq. 6 over episodes)."""

    row: torch.Tensor  # [R] sum of the row's episode masses: the row's draw weight
    step: torch.Tensor  # [R, T] a step's share: its episode's mass / the episode's length
    count: torch.Tensor | None  # [R] episodes with a valid step (None when not recomputed)
    minimum: torch.Tensor  # [R] the smallest episode mass (inf for an empty row)
    episode: torch.Tensor  # [R, T] each step's episode mass


class EpisodeTables(NamedTuple):
    """How the valid steps of stored rows fall into episodes: all a priority update needs
    besides the TD errors, so it is computed once, when the rows are stored."""

    share: torch.Tensor  # [R, T] 1 / (valid steps of the step's episode) on valid steps, else 0
    absent: torch.Tensor  # [R, T] bool: no episode of the row with this index has a valid step
    count: torch.Tensor | None  # [R] episodes with a valid step


def episode_tables(
    mask: torch.Tensor, episode: torch.Tensor, dtype: torch.dtype = torch.float64
) -> EpisodeTables:
    """:class:`EpisodeTables` of rows with valid steps ``mask`` and episodes ``episode``
    (``[R, T]`` each, :func:`~hetplug.shep.episodes.episode_index`)."""
    m = mask.to(dtype)
    counts = torch.zeros(mask.shape, dtype=dtype, device=mask.device).scatter_add_(-1, episode, m)
    absent = counts == 0
    share = m / counts.gather(-1, episode).clamp_min(1)
    return EpisodeTables(share, absent, (~absent).sum(-1).to(dtype))


def masses_from_tables(
    step_priorities: torch.Tensor,
    tables: EpisodeTables,
    episode: torch.Tensor,
    exponent: float = 1.0,
    eps: float = 0.0,
) -> EpisodeMasses:
    """:func:`episode_masses` from precomputed :class:`EpisodeTables`: one scatter for the
    episodes' means, then their masses (in the tables' dtype)."""
    share = tables.share
    mass = torch.zeros(share.shape, dtype=share.dtype, device=share.device)
    mass.scatter_add_(-1, episode, step_priorities * share)  # each episode's mean P~
    if eps:
        mass += eps
    if exponent != 1:
        mass = mass.pow(exponent)
    mass.masked_fill_(tables.absent, 0.0)
    at_step = mass.gather(-1, episode)
    minimum = mass.masked_fill(tables.absent, torch.inf).amin(-1)
    return EpisodeMasses(mass.sum(-1), at_step * share, tables.count, minimum, at_step)


def episode_masses(
    step_priorities: torch.Tensor,
    mask: torch.Tensor,
    episode: torch.Tensor,
    exponent: float = 1.0,
    eps: float = 0.0,
) -> EpisodeMasses:
    """Each episode's mass ``(P-bar_e + eps)^exponent``, P-bar_e the mean of ``P~`` over its
    valid steps (section 4.3's trajectory priority, per episode).

    A row holding several episodes is drawn with the sum of their masses, then one of its
    episodes with its mass and a step of it uniformly: each episode is drawn with its
    mass over the buffer's total, as eq. (6) draws trajectories.

    Args:
        step_priorities: ``[R, T]`` P~ of eq. (5).
        mask: ``[R, T]`` valid steps.
        episode: ``[R, T]`` each step's episode in its row (:func:`~hetplug.shep.episodes.episode_index`).
    """
    tables = episode_tables(mask, episode, step_priorities.dtype)
    return masses_from_tables(step_priorities, tables, episode, exponent, eps)


def intrinsic_reward(
    score: torch.Tensor,
    moran: torch.Tensor,
    coef_delta: float,
    coef_moran: float,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """Algorithm 1 line 8: r_int(t) = beta_t Delta E(t) + eta_t I(t), Delta E = 0 at each
    episode's first step (``start``: :func:`~hetplug.shep.episodes.episode_start`)."""
    return coef_delta * temporal_change(score, 1, start) + coef_moran * moran


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
