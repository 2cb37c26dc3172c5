"""A tiny batched multi-agent coverage task, embedded so the examples need no service.

N agents move on a G x G grid (stay, up, down, left, right) and must cover K landmarks.
Team reward per step: the fraction of landmarks occupied; when all are covered the
episode ends with a bonus of 1. Everything is a torch tensor over E parallel episodes.
"""

from __future__ import annotations

import torch

MOVES = torch.tensor([[0, 0], [0, 1], [0, -1], [-1, 0], [1, 0]])


class CoverageEnv:
    n_actions = 5

    def __init__(
        self,
        n_envs: int,
        n_agents: int = 4,
        n_landmarks: int = 4,
        grid: int = 8,
        horizon: int = 20,
        device="cpu",
    ):
        self.e, self.n, self.k, self.g, self.horizon = n_envs, n_agents, n_landmarks, grid, horizon
        self.device = torch.device(device)
        self.obs_dim = 2 + 2 * n_landmarks + 2 * (n_agents - 1)

    def reset(self, generator: torch.Generator) -> torch.Tensor:
        self.pos = torch.randint(0, self.g, (self.e, self.n, 2), generator=generator).to(self.device)
        self.landmarks = torch.randint(0, self.g, (self.e, self.k, 2), generator=generator).to(self.device)
        return self.observe()

    def observe(self) -> torch.Tensor:
        """[E, N, obs_dim]: own position, landmarks and other agents relative to self."""
        own = self.pos.float() / self.g
        rel_lm = (self.landmarks[:, None] - self.pos[:, :, None]).float() / self.g  # [E, N, K, 2]
        rel_ag = (self.pos[:, None] - self.pos[:, :, None]).float() / self.g  # [E, N, N, 2]
        others = ~torch.eye(self.n, dtype=torch.bool, device=self.device)
        rel_ag = rel_ag[:, others].reshape(self.e, self.n, self.n - 1, 2)
        return torch.cat([own, rel_lm.flatten(2), rel_ag.flatten(2)], -1)

    def positions(self) -> torch.Tensor:
        """[E, N, 2] agent positions in the unit box (cell centres)."""
        return (self.pos.float() + 0.5) / self.g

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.pos = (self.pos + MOVES.to(self.device)[actions]).clamp(0, self.g - 1)
        covered = (self.pos[:, None] == self.landmarks[:, :, None]).all(-1).any(-1)  # [E, K]
        done = covered.all(-1)
        reward = covered.float().mean(-1) + done.float()
        return self.observe(), reward, done
