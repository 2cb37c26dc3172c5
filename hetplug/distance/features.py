"""Which (x, y) pairs measure which heterogeneity: Table 1, Appendix F and G.

Each preset names the fields that form the independent variables x and the outputs y of
the core function F(y | x) of one heterogeneity type, and the CVAE mode the paper uses for
it. Fields are tensors ``[S, N, d]`` (per agent) or ``[S, d]`` (global, shared by all
agents); :func:`build_features` concatenates them into ``x [S, N, x_dim]`` and
``y [S, N, y_dim]`` for :class:`~hetplug.distance.DistanceEstimator`.

====================  ====================================  ============================  ===========
type                  x                                     y                             mode
====================  ====================================  ============================  ===========
observation (eq. 12)  state                                 obs                           model_based
response (eq. 13)     state, joint_action                   next_local_state              model_based
effect (eq. 14)       local_state, action                   next_state                    model_based
objective (eq. 15)    state, joint_action                   reward                        model_based
policy (eq. 16)       obs                                   action                        model_free
meta (App. G)         local_state, action                   next_local_state, next_obs,   model_free
                                                            reward
====================  ====================================  ============================  ===========

``effect`` uses the meta-transition simplification of Appendix F: the quadruple integral
over (s', s, a', a) is replaced by the agent's own local state and action, and y is the
resulting next (global, or others') state. ``joint_action`` is every agent's action,
flattened and shared. Actions are floats: one-hot encode discrete actions first.

The reward is one number among many outputs; Appendix G replicates it ("dimension
replication") so that the CVAE's reconstruction loss does not ignore it.
``reward_repeat="auto"`` repeats it as many times as the widest other y field has
dimensions; an integer sets the factor.

Pass ``next_local_state=None`` to drop a field from a preset's y (for example the meta
transition without local states, or without reward: Appendix G's variant).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from hetplug._checks import check_tensor


@dataclass(frozen=True)
class HeterogeneityType:
    x: tuple[str, ...]
    y: tuple[str, ...]
    mode: str


HETEROGENEITY_TYPES: dict[str, HeterogeneityType] = {
    "observation": HeterogeneityType(("state",), ("obs",), "model_based"),
    "response": HeterogeneityType(("state", "joint_action"), ("next_local_state",), "model_based"),
    "effect": HeterogeneityType(("local_state", "action"), ("next_state",), "model_based"),
    "objective": HeterogeneityType(("state", "joint_action"), ("reward",), "model_based"),
    "policy": HeterogeneityType(("obs",), ("action",), "model_free"),
    "meta": HeterogeneityType(
        ("local_state", "action"), ("next_local_state", "next_obs", "reward"), "model_free"
    ),
}


def replicate(value: torch.Tensor, factor: int) -> torch.Tensor:
    """Dimension replication (Appendix G): ``[..., d]`` -> ``[..., d * factor]``."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"reward_repeat must be an integer >= 1 or 'auto', got reward_repeat={factor!r}")
    return value.repeat_interleave(factor, dim=-1)


def _per_agent(name: str, value: torch.Tensor, s: int | None, n: int) -> torch.Tensor:
    check_tensor(name, value, (1, 2, 3))
    if name == "joint_action":
        # [S, N, A] -> [S, N*A], shared by all agents
        value = value.flatten(1) if value.dim() == 3 else value
    if value.dim() == 1:  # [S] scalar per step, e.g. a team reward
        value = value.unsqueeze(-1)
    if value.dim() == 2:  # [S, d] global -> every agent
        value = value.unsqueeze(1).expand(-1, n, -1)
    elif value.shape[1] != n:
        raise ValueError(f"{name} must be [S, N={n}, d] or global [S, d], got {tuple(value.shape)}")
    if s is not None and value.shape[0] != s:
        raise ValueError(f"{name} has S={value.shape[0]} samples but another field has S={s}")
    return value.float()


def build_features(
    kind: str, fields: Mapping[str, torch.Tensor | None], n_agents: int, reward_repeat: int | str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x [S, N, x_dim], y [S, N, y_dim])`` for one heterogeneity type from named fields.

    Raises ``ValueError`` naming a missing field, a field whose S or N disagrees, or an
    unknown ``kind``. A field given as None is left out (it must not leave x or y empty).
    """
    if kind not in HETEROGENEITY_TYPES:
        raise ValueError(f"kind must be one of {sorted(HETEROGENEITY_TYPES)}, got kind={kind!r}")
    preset = HETEROGENEITY_TYPES[kind]
    s: int | None = None
    parts: dict[str, list[torch.Tensor]] = {"x": [], "y": []}
    names: dict[str, list[str]] = {"x": [], "y": []}
    for side, wanted in (("x", preset.x), ("y", preset.y)):
        for name in wanted:
            if name not in fields:
                raise ValueError(
                    f"heterogeneity type {kind!r} needs field {name!r} (x={preset.x}, y={preset.y})"
                )
            value = fields[name]
            if value is None:
                continue
            value = _per_agent(name, value, s, n_agents)
            s = value.shape[0]
            parts[side].append(value)
            names[side].append(name)
    for side in ("x", "y"):
        if not parts[side]:
            raise ValueError(f"heterogeneity type {kind!r}: every {side} field is None")
    if "reward" in names["y"] and len(parts["y"]) >= 1:
        i = names["y"].index("reward")
        others = [p.shape[-1] for j, p in enumerate(parts["y"]) if j != i]
        factor = (max(others) if others else 1) if reward_repeat == "auto" else reward_repeat
        parts["y"][i] = replicate(parts["y"][i], factor)
    return torch.cat(parts["x"], -1), torch.cat(parts["y"], -1)
