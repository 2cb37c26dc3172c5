"""Settings of the SHEP plugin. The defaults are the paper's Algorithm 1: spatial priority,
intrinsic reward and Group-HER all on (each can be switched off for ablations). The paper
(shep.txt) gives no numeric values except PER's alpha = 0.6 for the TD exponent; the other
defaults are neutral (weights 1) and documented as our choice."""

from __future__ import annotations

from dataclasses import dataclass

from hetplug._checks import (
    check_bool,
    check_choice,
    check_int,
    check_int_sequence,
    check_number_sequence,
    check_range,
)
from hetplug.spatial.weights import TRANSFORMATIONS


def _check_pair(name: str, value: tuple[float, float]) -> tuple[float, float]:
    return check_number_sequence(name, value, length=2)  # (start, end)


@dataclass
class SHEPConfig:
    """SHEP (shep.txt, section 4 and Algorithm 1). Symbols follow the paper."""

    # --- cells (section 4.1) -----------------------------------------------------
    grid_low: tuple[float, ...] = (-1.0, -1.0)
    """Lower corner of the box the grid covers (one value per position dimension)."""
    grid_high: tuple[float, ...] = (1.0, 1.0)
    """Upper corner of the box; positions outside fall into border cells."""
    grid_shape: tuple[int, ...] = (8, 8)
    """Macro-cells per dimension (M = product). Ignored when the plugin gets ``cells``."""
    contiguity: str = "rook"
    """Grid adjacency for Moran's I: ``"rook"`` or ``"queen"``."""
    moran_transformation: str = "r"
    """Weights transformation for Moran's I, as esda: ``"r"``, ``"b"`` or ``"o"``."""

    # --- situation score (eqs. 3-4) ------------------------------------------------
    alpha: float = 1.0
    """alpha in eq. (3): weight of the occupancy entropy H_occ."""
    beta: float = 1.0
    """beta in eq. (3): weight of the action diversity entropy H_div (0 needs no actions)."""
    eta: float = 1.0
    """eta in eq. (3): weight of Moran's I."""
    kappa: float = 1.0
    """kappa in eq. (4): scale of the advantage delta = kappa (E_self - E_opp)."""
    normalize_entropies: bool = False
    """Divide H_occ by log M and H_div by log |A| so both lie in [0, 1] like I's scale."""
    delta_window: int = 1
    """Delta-delta(t) = delta(t) - mean(delta over the previous ``delta_window`` steps)."""
    action_bins: int = 5
    """Bins per dimension for continuous actions in H_div."""
    action_low: float = -1.0
    """Lower bound of continuous actions (for binning)."""
    action_high: float = 1.0
    """Upper bound of continuous actions (for binning)."""

    # --- priority (eqs. 5-7, Algorithm 1 line 20) ----------------------------------
    spatial_priority: bool = True
    """Include the tactical terms (lambda_Delta |Delta delta| and lambda_I max(0, I)) in the
    priority; off: |TD|^alpha alone (trajectory-level PER), the ablation without them."""
    priority_form: str = "sum"
    """``"sum"``: eq. (5), |TD|^a + l_D |Dd| + l_I max(0, I). ``"product"``: Algorithm 1
    line 20, |TD|^a * (l_D |Dd| + l_I max(0, I))."""
    td_exponent: float = 0.6
    """alpha in eq. (5): exponent on |TD| (PER's 0.6, as the paper states)."""
    lambda_delta: float = 1.0
    """lambda_Delta: weight of the strategic-shift term |Delta delta(t)|."""
    lambda_moran: float = 1.0
    """lambda_I: weight of the cohesion term max(0, I(t))."""
    priority_exponent: float = 1.0
    """Exponent on the trajectory priority in the sampler; eq. (6) is linear (1.0)."""
    eps: float = 1e-6
    """Added to every trajectory priority so no stored trajectory is starved."""
    is_beta: float = 0.4
    """Initial IS exponent beta in eq. (7); annealed to ``is_beta_final``."""
    is_beta_final: float = 1.0
    """Final IS exponent (1 restores unbiasedness, eq. 8)."""
    is_beta_steps: int = 0
    """Sample calls over which beta is annealed. 0 (default): over the run, by the valid
    environment steps collected against ``HostSpec.total_env_steps`` (beta reaches
    ``is_beta_final`` at the end of the run); constant ``is_beta`` if the host gives no length."""
    max_probability: float | None = None
    """Clip each trajectory's sampling probability p_i at this value (section 4.3)."""
    weight_normalization: str = "max"
    """IS weight normalisation: ``"max"`` (buffer), ``"batch"`` or ``"none"``."""
    check_inputs: bool = True
    """Validate priorities, indices and TD errors (one host synchronisation per call);
    False once a pipeline is trusted, e.g. on a GPU."""

    # --- intrinsic reward (Algorithm 1 line 8) -------------------------------------
    intrinsic_reward: bool = True
    """Return r_int = beta_t Delta E(t) + eta_t I(t) for the host to add to the reward."""
    intrinsic_delta_coef: tuple[float, float] = (0.1, 0.0)
    """(start, end) of beta_t, annealed linearly over ``intrinsic_anneal_steps``."""
    intrinsic_moran_coef: tuple[float, float] = (0.05, 0.0)
    """(start, end) of eta_t."""
    intrinsic_anneal_steps: int = 1_000_000
    """Valid environment steps (summed over trajectories) over which the coefficients move."""

    # --- Group-HER (end of section 4.3, Algorithm 1 lines 12-15) --------------------
    group_her: bool = True
    """Return relabelled copies of episodes with high cohesion or a rising advantage."""
    her_moran_threshold: float = 0.3
    """tau_th: a step qualifies when I(t) > tau_th."""
    her_rising_advantage: bool = True
    """A step also qualifies when Delta delta(t) > 0."""
    her_min_length: int = 3
    """Shortest run of qualifying steps that counts as a segment."""
    her_reward: float = 1.0
    """r_her, the virtual success reward; with ``her_reward_relative`` in units of the
    largest |step reward| seen so far."""
    her_reward_relative: bool = True
    """Scale ``her_reward`` by the largest |step reward| seen so far, so the sub-goal reward
    matches the task's reward scale (an absolute 1.0 can dwarf a dense task's per-step
    reward); False: ``her_reward`` is absolute."""
    her_relabel: str = "final"
    """``"final"``: the copy ends at the segment's end (done, mask cut) and gets r_her
    there, like a reached sub-goal; ``"segment"``: every step of the segment gets r_her."""
    her_only_failed: bool = True
    """Relabel only trajectories whose ``success`` is False (all when the host gives none)."""
    her_max_fraction: float = 0.5
    """On average at most this many copies per collected episode: each batch adds
    ``her_max_fraction x episodes`` to a credit, a copy spends 1, and a batch may copy
    ``ceil(credit)`` episodes (so a batch of one episode can be copied)."""

    def __post_init__(self) -> None:
        self.grid_shape = check_int_sequence("grid_shape", self.grid_shape, low=1)
        self.grid_low = check_number_sequence("grid_low", self.grid_low, length=len(self.grid_shape))
        self.grid_high = check_number_sequence("grid_high", self.grid_high, length=len(self.grid_shape))
        if any(h <= lo for lo, h in zip(self.grid_low, self.grid_high, strict=True)):
            raise ValueError(
                f"grid_high must exceed grid_low in every dimension, got grid_high={self.grid_high!r} "
                f"with grid_low={self.grid_low!r}"
            )
        check_choice("contiguity", self.contiguity, ("rook", "queen"))
        check_choice("moran_transformation", self.moran_transformation, TRANSFORMATIONS)
        for name in ("alpha", "beta", "eta", "kappa", "lambda_delta", "lambda_moran", "her_reward"):
            check_range(name, getattr(self, name))
        check_range("td_exponent", self.td_exponent, 0.0)
        check_range("priority_exponent", self.priority_exponent, 0.0)
        check_range("eps", self.eps, 0.0)
        check_int("delta_window", self.delta_window, 1)
        check_int("action_bins", self.action_bins, 1)
        check_range("action_low", self.action_low)
        check_range("action_high", self.action_high, self.action_low, low_open=True)
        check_choice("priority_form", self.priority_form, ("sum", "product"))
        check_range("is_beta", self.is_beta, 0.0)
        check_range("is_beta_final", self.is_beta_final, 0.0)
        check_int("is_beta_steps", self.is_beta_steps, 0)
        if self.max_probability is not None:
            check_range("max_probability", self.max_probability, 0.0, 1.0, low_open=True)
        check_choice("weight_normalization", self.weight_normalization, ("max", "batch", "none"))
        self.intrinsic_delta_coef = _check_pair("intrinsic_delta_coef", self.intrinsic_delta_coef)
        self.intrinsic_moran_coef = _check_pair("intrinsic_moran_coef", self.intrinsic_moran_coef)
        check_int("intrinsic_anneal_steps", self.intrinsic_anneal_steps, 0)
        check_range("her_moran_threshold", self.her_moran_threshold)
        check_int("her_min_length", self.her_min_length, 1)
        check_choice("her_relabel", self.her_relabel, ("final", "segment"))
        check_range("her_max_fraction", self.her_max_fraction, 0.0, 1.0)
        for name in ("spatial_priority", "intrinsic_reward", "group_her", "her_reward_relative",
                     "her_rising_advantage", "her_only_failed", "normalize_entropies", "check_inputs"):  # fmt: skip
            check_bool(name, getattr(self, name))
