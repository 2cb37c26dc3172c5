"""Heterogeneity distance matrices, eq. (3): d_ij = E_x[ W2(p_i(z|x), p_j(z|x)) ].

``DistanceEstimator`` keeps a :class:`SamplePool`, fits a :class:`CVAE` on it and returns
the ``[N, N]`` matrix. For each sampled x every agent's Gaussian is computed in one
batched pass (``[S, N, Z]``), all N x N W2 values in one ``cdist``, and the expectation is
the Monte-Carlo mean over the S samples (processed in blocks that bound memory).

Which x: model-free (eq. 5), the distances are taken at x drawn from the pool (any
agent's), with every agent's id, so all agents are compared at the same inputs.
Model-based (eq. 4), ``p_i(z|x) = f(z | y_i, x_i)`` needs each agent's output, so the
pool's ``(x, y)`` rows are used as they are; when x is shared by all agents at a step (a
global state, as in the observation, response and objective presets) this is exactly
eq. (3).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from hetplug._checks import check_bool, check_choice, check_device, check_int, check_tensor, config_from_dict
from hetplug.distance.cvae import CVAE, MODES, CVAEConfig
from hetplug.distance.pool import SamplePool
from hetplug.distance.wasserstein import mean_pairwise_gaussian_w2
from hetplug.state import check_module_state, check_optimizer_state, require_keys, snapshot

#: what DistanceEstimator.state_dict() holds
STATE_KEYS = ("model", "optimizer", "pool", "generator", "noise_generator", "fitted")


class DistanceEstimator:
    """CVAE-based heterogeneity distances between N agents.

    Args:
        n_agents, x_dim, y_dim: sizes of the samples ``x [S, N, x_dim]``, ``y [S, N, y_dim]``.
        mode: ``"model_free"`` (default; the meta-transition) or ``"model_based"``.
        config: :class:`CVAEConfig` or a mapping of its fields.
        pool_capacity: time steps the sample pool keeps (each holds all N agents).
        fit_samples: time steps drawn from the pool for one fit (None: the whole pool).
        device: where the pool and the CVAE live.
        seed: seeds the CVAE's initialisation, the pool draws and the reparameterisation noise.
    """

    def __init__(
        self,
        n_agents: int,
        x_dim: int,
        y_dim: int,
        mode: str = "model_free",
        config: CVAEConfig | dict | None = None,
        pool_capacity: int = 10_000,
        fit_samples: int | None = None,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        check_choice("mode", mode, MODES)
        if fit_samples is not None:
            check_int("fit_samples", fit_samples, 1)
        check_int("seed", seed, 0)
        self.config = config_from_dict(CVAEConfig, config, "cvae")
        self.mode = mode
        self.fit_samples = fit_samples
        self.device = check_device("device", device)
        self.pool = SamplePool(pool_capacity, n_agents, x_dim, y_dim, self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = CVAE(mode, n_agents, x_dim, y_dim, self.config).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.noise_generator = torch.Generator(device=self.device).manual_seed(seed)
        self.fitted = False

    @property
    def n_agents(self) -> int:
        return self.pool.n_agents

    def add(self, x: torch.Tensor, y: torch.Tensor, check_values: bool = True) -> None:
        """Put ``x [S, N, x_dim]``, ``y [S, N, y_dim]`` into the pool (checked first; values
        too unless ``check_values=False``)."""
        self.pool.add(x, y, check_values)

    def fit(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> dict[str, float]:
        """Train the CVAE for ``config.epochs`` epochs on ``(x, y)``, or on the pool when omitted.

        Training continues from the current weights (HetDPS refits periodically as the
        pool changes). Returns the last epoch's mean loss terms.
        """
        if (x is None) != (y is None):
            raise ValueError("pass both x and y, or neither (to fit on the pool)")
        if x is None:
            x, y = self.pool.sample(self.fit_samples, self.generator)
        else:
            self.pool.check(x, y)
            x, y = x.to(self.device), y.to(self.device)
        s, n = x.shape[:2]
        rows_x = x.reshape(s * n, -1).float()
        rows_y = y.reshape(s * n, -1).float()
        agent = torch.arange(n, device=self.device).repeat(s)
        self.model.set_normalisation(rows_x, rows_y)
        c = self.config
        self.model.train()
        totals = torch.zeros(3, device=self.device)
        n_batches = 0
        for _ in range(c.epochs):
            order = torch.randperm(s * n, generator=self.generator).to(self.device)
            totals.zero_()
            n_batches = 0
            for start in range(0, s * n, c.batch_size):
                idx = order[start : start + c.batch_size]
                eps = torch.randn(
                    idx.shape[0], c.latent_dim, generator=self.noise_generator, device=self.device
                )
                loss, recon, kl = self.model.loss(rows_x[idx], rows_y[idx], agent[idx], c.kl_weight, eps)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                totals += torch.stack([loss.detach(), recon, kl])
                n_batches += 1
        self.model.eval()
        self.fitted = True
        loss, recon, kl = (totals / max(1, n_batches)).tolist()
        return {"loss": loss, "recon": recon, "kl": kl}

    @torch.no_grad()
    def gaussians(
        self, x: torch.Tensor | None = None, y: torch.Tensor | None = None, n_samples: int = 1024
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every agent's ``(mu, sigma) [S, N, Z]`` at S sampled inputs.

        Model-free: ``x [S, x_dim]`` (shared by all agents) or ``[S, N, x_dim]`` (each
        agent's own x); default: ``n_samples`` steps from the pool, one random agent's x per
        step. Model-based: ``x [S, N, x_dim]`` and ``y [S, N, y_dim]``; default: pool rows.
        """
        if not self.fitted:
            raise RuntimeError("fit the DistanceEstimator before asking for distances")
        check_int("n_samples", n_samples, 1)
        n = self.n_agents
        if self.mode == "model_free":
            if y is not None:
                raise ValueError("model-free distances take x only (y is what the CVAE predicts)")
            if x is None:
                # Only the chosen agent's x of each step is read (not every agent's x and y).
                rows = self.pool.rows(n_samples, self.generator)
                who = torch.randint(0, n, (rows.shape[0],), generator=self.generator).to(self.device)
                x = self.pool.x[rows, who]
            check_tensor("x", x, (2, 3))
            if x.shape[-1] != self.pool.x_dim or (x.dim() == 3 and x.shape[1] != n):
                raise ValueError(
                    f"x must be [S, x_dim={self.pool.x_dim}] or [S, N={n}, x_dim], got {tuple(x.shape)}"
                )
            x = x.to(self.device).float()
            if x.dim() == 2:
                # Shared by all agents: the first layer reads x once per sample and adds every
                # agent's embedding by broadcasting ([S, 1, h] + [N, h]).
                x = x.unsqueeze(1)
            return self._encode_in_blocks(x, None)
        if (x is None) != (y is None):
            raise ValueError("model-based distances need both x and y (or neither, to use the pool)")
        if x is None:
            x, y = self.pool.sample(n_samples, self.generator)
        self.pool.check(x, y)
        return self._encode_in_blocks(x.to(self.device).float(), y.to(self.device).float())

    def _encode_in_blocks(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Every agent's ``(mu, sigma) [S, N, Z]``: one encoder pass over all agents and samples,
        in blocks of samples of about 2^15 rows on the CPU (cache-sized intermediates)."""
        s, n, z = x.shape[0], self.n_agents, self.config.latent_dim
        block = s if self.device.type != "cpu" else max(1, min(s, (1 << 15) // n))
        agent = torch.arange(n, device=self.device) if self.mode == "model_free" else None
        mu, sigma = x.new_empty(s, n, z), x.new_empty(s, n, z)
        for start in range(0, s, block):
            rows = slice(start, start + block)
            mu[rows], sigma[rows] = self.model.encode(x[rows], y=None if y is None else y[rows], agent=agent)
        return mu, sigma

    @torch.no_grad()
    def distance_matrix(
        self, x: torch.Tensor | None = None, y: torch.Tensor | None = None, n_samples: int = 1024
    ) -> torch.Tensor:
        """``[N, N]`` heterogeneity distances: symmetric, zero diagonal, non-negative."""
        return mean_pairwise_gaussian_w2(*self.gaussians(x, y, n_samples))

    def state_dict(self) -> dict[str, Any]:
        return {
            # copies: an in-memory round trip must not share Adam's moment tensors
            "model": copy.deepcopy(self.model.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "pool": self.pool.state_dict(),
            "generator": self.generator.get_state(),
            "noise_generator": self.noise_generator.get_state(),
            "fitted": self.fitted,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`: the pool, the CVAE (of the same dimensions), its
        optimiser and the generators are validated first; on any error nothing changes."""
        where = "distance estimator"
        require_keys(where, state, STATE_KEYS)
        check_module_state(f"{where} state['model']", self.model, state["model"])
        check_optimizer_state(f"{where} state['optimizer']", self.optimizer, state["optimizer"])
        generators = {}
        for key, device in (("generator", "cpu"), ("noise_generator", self.device)):
            value = state[key]
            try:  # a generator state is a byte tensor of the generator's own size
                generators[key] = torch.Generator(device=device).set_state(value)
            except (RuntimeError, TypeError):
                raise ValueError(
                    f"{where} state[{key!r}] must be a torch.Generator state (get_state()) for device "
                    f"{device}, got {where} state[{key!r}]={_describe(value)}"
                ) from None
        check_bool(f"{where} state['fitted']", state["fitted"])
        backup = self.state_dict()
        self.pool.load_state_dict(state["pool"])  # validated whole before it assigns
        try:
            self.model.load_state_dict(state["model"])
            # a copy: torch's Optimizer.load_state_dict keeps the given tensors, and training
            # on would then change the caller's saved state
            self.optimizer.load_state_dict(snapshot(state["optimizer"]))
        except Exception:  # checked above; should torch still refuse, put everything back
            self.pool.load_state_dict(backup["pool"])
            self.model.load_state_dict(backup["model"])
            self.optimizer.load_state_dict(backup["optimizer"])
            raise
        self.generator.set_state(state["generator"])
        self.noise_generator.set_state(state["noise_generator"])
        self.fitted = bool(state["fitted"])
        self.model.train(not self.fitted)  # as fit() leaves it: eval mode once fitted


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of dtype {value.dtype} and shape {tuple(value.shape)}"
    return repr(value)
