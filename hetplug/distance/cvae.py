"""The conditional VAE that turns each agent's function F_i(y|x) into a Gaussian p_i(z|x).

Two modes (HetDPS section 4.2):

* ``"model_based"`` (eq. 4): the encoder f(z | y, x) sees the agent's output; the
  decoder g(y | z, x) reconstructs it. ``p_i(z|x) = f(z | y_i(x), x)``.
* ``"model_free"`` (eq. 5): the encoder f(z | i, x) sees the agent id instead of y; the
  decoder g(y | z, x) predicts y. ``p_i(z|x) = f(z | i, x)``.

Eq. (5) also writes the id into the decoder, g(y | z, i, x). We do not: a decoder that
sees i can predict y from (i, x) alone, the KL term then pushes every posterior onto the
prior and all distances shrink to zero (posterior collapse). SePS and MADPS give the id
to the encoder only, and ``tests/test_hetdps.py`` checks that this recovers hidden
groups. The prior p(z | .) is the standard Gaussian in both modes.

The loss is the negative ELBO: a Gaussian reconstruction term (squared error, summed over
y) plus ``kl_weight`` times the KL to N(0, I) (summed over z), averaged over samples.
Inputs are standardised with statistics of the data the model was fitted on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hetplug._checks import check_choice, check_int, check_range

MODES = ("model_free", "model_based")


@dataclass
class CVAEConfig:
    """Sizes and training settings; defaults are MADPS's (the predecessor's) values."""

    hidden: int = 32
    latent_dim: int = 10
    kl_weight: float = 0.01
    epochs: int = 10
    batch_size: int = 128
    lr: float = 3e-4

    def __post_init__(self) -> None:
        for name in ("hidden", "latent_dim", "epochs", "batch_size"):
            check_int(name, getattr(self, name), 1)
        check_range("kl_weight", self.kl_weight, 0.0)
        check_range("lr", self.lr, 0.0, low_open=True)


class CVAE(nn.Module):
    """Encoder and decoder MLPs (two hidden layers each) for one mode."""

    def __init__(self, mode: str, n_agents: int, x_dim: int, y_dim: int, config: CVAEConfig) -> None:
        super().__init__()
        check_choice("mode", mode, MODES)
        self.mode, self.n_agents, self.x_dim, self.y_dim = mode, n_agents, x_dim, y_dim
        h, z = config.hidden, config.latent_dim
        cond_dim = y_dim if mode == "model_based" else 0
        # The first encoder layer reads [y, x] (model-based) or [onehot(i), x] (model-free);
        # the one-hot product is an embedding lookup, so N = 1000 agents cost no wide input.
        self.enc_in = nn.Linear(x_dim + cond_dim, h)
        self.agent_embedding = nn.Embedding(n_agents, h) if mode == "model_free" else None
        if self.agent_embedding is not None:
            # All agents start identical (distance 0); only differences in their data move
            # their embeddings apart, so agents of one type stay close.
            nn.init.zeros_(self.agent_embedding.weight)
        # In-place ReLUs (on fresh sums and Linear outputs, so autograd is unaffected): the
        # distance pass runs this on [S, N, h], S x N = 10^6 rows at N = 1000.
        self.enc = nn.Sequential(
            nn.ReLU(inplace=True), nn.Linear(h, h), nn.ReLU(inplace=True), nn.Linear(h, 2 * z)
        )
        self.dec = nn.Sequential(
            nn.Linear(z + x_dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, y_dim)
        )
        self.register_buffer("x_mean", torch.zeros(x_dim))
        self.register_buffer("x_std", torch.ones(x_dim))
        self.register_buffer("y_mean", torch.zeros(y_dim))
        self.register_buffer("y_std", torch.ones(y_dim))

    @torch.no_grad()
    def set_normalisation(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Standardise with the mean/std of ``x [R, x_dim]`` and ``y [R, y_dim]`` (std floored)."""
        self.x_mean.copy_(x.mean(0))
        self.x_std.copy_(
            x.std(0, unbiased=False).clamp_min(1e-3) if x.shape[0] > 1 else torch.ones_like(self.x_std)
        )
        self.y_mean.copy_(y.mean(0))
        self.y_std.copy_(
            y.std(0, unbiased=False).clamp_min(1e-3) if y.shape[0] > 1 else torch.ones_like(self.y_std)
        )

    def encode(
        self, x: torch.Tensor, *, y: torch.Tensor | None = None, agent: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, sigma)`` of f(z | y, x) or f(z | i, x), for any leading dims of ``x [..., x_dim]``.

        Model-free: ``agent`` is an int64 tensor broadcastable to x's leading dims.
        """
        xn = (x - self.x_mean) / self.x_std
        if self.mode == "model_based":
            yn = (y - self.y_mean) / self.y_std
            hidden = self.enc_in(torch.cat([yn, xn], -1))
        else:
            hidden = self.enc_in(xn) + self.agent_embedding(agent)
        mu, log_var = self.enc(hidden).chunk(2, -1)
        return mu, (0.5 * log_var.clamp(-20.0, 10.0)).exp()

    def loss(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        agent: torch.Tensor | None,
        kl_weight: float,
        eps: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Negative ELBO (eq. 4 or 5) on rows ``x [R, x_dim]``, ``y [R, y_dim]``: (total, recon, kl).

        ``eps [R, Z]`` is the reparameterisation noise (drawn here when None).
        """
        mu, sigma = self.encode(x, y=y, agent=agent)
        z = mu + sigma * (torch.randn_like(mu) if eps is None else eps)
        xn = (x - self.x_mean) / self.x_std
        yn = (y - self.y_mean) / self.y_std
        recon = (self.dec(torch.cat([z, xn], -1)) - yn).square().sum(-1).mean()
        kl = 0.5 * (mu.square() + sigma.square() - 2 * sigma.clamp_min(1e-12).log() - 1).sum(-1).mean()
        return recon + kl_weight * kl, recon.detach(), kl.detach()
