"""SHPPO's networks (../shared/papers/shppo.txt section IV, Tables IV-V).

Shapes: ``[..., n, F]`` (any leading batch dims, then n agents, then features). All
parameters are shared by the agents; only the HeteLayer's *generated* weights differ,
because they are computed from each agent's latent.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hetplug._checks import check_bool, check_choice, check_int, check_range


def mlp(sizes: list[int], final_activation: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _check_features(name: str, x: torch.Tensor, features: int, min_dim: int = 2) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {name}={type(x).__name__}")
    if x.is_complex():
        raise TypeError(f"{name} must be a real tensor, got {name} of dtype {x.dtype}")
    if x.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dims [..., n, {features}], got {name} of shape {tuple(x.shape)}"
        )
    if x.shape[-1] != features:
        raise ValueError(
            f"{name} must have {features} features in its last dim, got {name} of shape {tuple(x.shape)}"
        )


def _as_input(name: str, x: torch.Tensor, features: int, module: nn.Module, min_dim: int = 2) -> torch.Tensor:
    """``x`` checked and cast to the dtype of ``module``'s parameters: integer, bool, half
    or double inputs mean their values (a bool observation is 0 or 1), so they are cast;
    a complex tensor, or anything that is not a tensor, is refused naming its type."""
    _check_features(name, x, features, min_dim)
    dtype = next(module.parameters()).dtype
    return x if x.dtype == dtype else x.to(dtype)


class LatentNet(nn.Module):
    """Encoder of eq. (4): a 3-layer MLP over (o_i, h_i^{t-1}) -> N(mu_i, diag(sigma_i^2)).

    Args:
        obs_dim: O. hidden_state_dim: H of the actor's RNN memory (0 without one).
        latent_dim: L (3 in Table IV). hidden: MLP width (64).
        min_std: floor on sigma, so log-densities and the entropy stay finite.
        zero_inputs: ablation of section V-E: the encoder sees zeros instead of (o, h).
    """

    def __init__(
        self,
        obs_dim: int,
        hidden_state_dim: int = 0,
        latent_dim: int = 3,
        hidden: int = 64,
        min_std: float = 1e-3,
        zero_inputs: bool = False,
    ) -> None:
        super().__init__()
        check_int("obs_dim", obs_dim, 1)
        check_int("hidden_state_dim", hidden_state_dim, 0)
        check_int("latent_dim", latent_dim, 1)
        check_int("hidden", hidden, 1)
        check_range("min_std", min_std, 0.0, low_open=True)
        check_bool("zero_inputs", zero_inputs)
        self.obs_dim, self.hidden_state_dim, self.latent_dim = obs_dim, hidden_state_dim, latent_dim
        self.min_std = min_std
        self.zero_inputs = zero_inputs
        self.encoder = mlp([obs_dim + hidden_state_dim, hidden, hidden, 2 * latent_dim])

    def forward(
        self, obs: torch.Tensor, hidden_state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, sigma)``, each ``[..., n, L]``. Integer, bool, half or double inputs are
        cast to the network's dtype."""
        obs = _as_input("obs", obs, self.obs_dim, self)
        x = obs
        if self.hidden_state_dim:
            if hidden_state is None:
                raise ValueError(
                    f"hidden_state [..., n, {self.hidden_state_dim}] is required (hidden_state_dim > 0), "
                    "got hidden_state=None"
                )
            hidden_state = _as_input("hidden_state", hidden_state, self.hidden_state_dim, self)
            x = torch.cat([obs, hidden_state.expand(*obs.shape[:-1], -1)], -1)
        if self.zero_inputs:
            x = torch.zeros_like(x)
        mu, raw = self.encoder(x).chunk(2, -1)
        sigma = nn.functional.softplus(raw) + self.min_std
        return mu, sigma

    @staticmethod
    def sample(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """l_i ~ N(mu_i, sigma_i) with the reparameterisation trick (rsample), eq. (4)."""
        return torch.distributions.Normal(mu, sigma).rsample()

    @staticmethod
    def acting_latent(mu: torch.Tensor, sigma: torch.Tensor, explore: bool) -> torch.Tensor:
        """The latent an agent acts with (Algorithm 1): ``l ~ N(mu, sigma)`` while exploring,
        ``mu`` for deterministic evaluation. Hosts store it with the step, so the PPO ratio
        re-evaluates the policy with the HeteLayer weights that acted."""
        return LatentNet.sample(mu, sigma) if explore else mu


class HeteLayer(nn.Module):
    """Heterogeneous linear layer, eq. (5): ``y_i = w_i x_i + b_i``, with ``w_i, b_i`` from ``l_i``.

    A shared 3-layer MLP decoder maps l_i to a code d_i; the linear heads ``w_decoder`` and
    ``b_decoder`` turn it into ``w_i`` (``[in, out]``) and ``b_i`` (``[out]``).

    ``latent`` is either ``[..., n, L]`` like ``x`` (a latent per row, as in training) or
    ``[n, L]`` / any shape that broadcasts against ``x``'s leading dims, or an expanded
    (stride 0) view (a latent per agent shared by a batch, e.g. a fixed team at
    evaluation). Then each distinct latent's weight is generated once, and x's rows,
    grouped by latent, go through one batched matmul; no weight is copied per row.

    Per-row latents cost about ``decoder_hidden`` times a plain Linear: generating ``w_i``
    reads all ``decoder_hidden * in * out`` weights of ``w_decoder`` for every row, which no
    reordering of the products avoids (see benchmarks/bench_shppo.py and the README). With
    G distinct latents the generation costs ``G * decoder_hidden * in * out`` multiply-adds
    in each of the forward and the two backward products: below
    ``min(G, rows) * decoder_hidden * in * out`` no ordering of the products goes.
    """

    def __init__(
        self, in_features: int, out_features: int, latent_dim: int = 3, decoder_hidden: int = 64
    ) -> None:
        super().__init__()
        for name, v in (
            ("in_features", in_features),
            ("out_features", out_features),
            ("latent_dim", latent_dim),
        ):
            check_int(name, v, 1)
        check_int("decoder_hidden", decoder_hidden, 1)
        self.in_features, self.out_features, self.latent_dim = in_features, out_features, latent_dim
        self.decoder = mlp(
            [latent_dim, decoder_hidden, decoder_hidden, decoder_hidden], final_activation=True
        )
        self.w_decoder = nn.Linear(decoder_hidden, in_features * out_features)
        self.b_decoder = nn.Linear(decoder_hidden, out_features)
        # Start near a standard Linear init: generated weights ~ U(-1/sqrt(in), 1/sqrt(in)) scale.
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(
            self.w_decoder.weight, -bound / math.sqrt(decoder_hidden), bound / math.sqrt(decoder_hidden)
        )
        nn.init.uniform_(self.w_decoder.bias, -bound, bound)

    def generate(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w [..., in, out], b [..., out])`` for latents ``[..., L]``."""
        latent = _as_input("latent", latent, self.latent_dim, self, min_dim=1)
        d = self.decoder(latent)
        w = self.w_decoder(d).unflatten(-1, (self.in_features, self.out_features))
        return w, self.b_decoder(d)

    def forward(self, x: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        x = _as_input("x", x, self.in_features, self)
        latent = _as_input("latent", latent, self.latent_dim, self, min_dim=1)
        lead_x, lead_l = x.shape[:-1], latent.shape[:-1]
        try:
            lead = torch.broadcast_shapes(lead_x, lead_l)
        except RuntimeError:
            raise ValueError(
                f"latent's leading dims {tuple(lead_l)} do not broadcast against x's {tuple(lead_x)} ([..., n])"
            ) from None
        if lead != lead_x:
            raise ValueError(f"latent's leading dims {tuple(lead_l)} would enlarge x's {tuple(lead_x)}")
        # The latent's distinct entries: a dim of size 1, missing, or expanded (stride 0)
        # reuses one latent across x's rows, so its weight is generated once, not per row.
        latent = latent.reshape((1,) * (len(lead_x) - len(lead_l)) + tuple(lead_l) + (self.latent_dim,))
        shared = [k for k in range(len(lead_x)) if latent.shape[k] == 1 or latent.stride(k) == 0]
        if not shared or all(lead_x[k] == 1 for k in shared):
            return self._per_row(x, latent.expand(*lead_x, self.latent_dim))
        own = [k for k in range(len(lead_x)) if k not in shared]
        distinct = latent[tuple(slice(0, 1) if k in shared else slice(None) for k in range(len(lead_x)))]
        d = self.decoder(distinct.reshape(-1, self.latent_dim))  # [G, h]: one code per distinct latent
        g_shape = [lead_x[k] for k in own]
        r_shape = [lead_x[k] for k in shared]
        # x's rows grouped by latent, [G, R, in] (a view when the dims allow).
        xg = x.permute(*own, *shared, -1).reshape(d.shape[0], -1, self.in_features)
        groups, rows = xg.shape[:2]
        bias = self.b_decoder(d).unsqueeze(1)  # b_g, [G, 1, out]
        if rows > 8:
            w = self.w_decoder(d).view(groups, self.in_features, self.out_features)
        else:
            # Few rows per weight: w_g = reshape(W_dec d_g) + B (B the head's bias), so
            # x w_g = x reshape(W_dec d_g) + x B; the shared B goes through one plain matmul
            # of x instead of being added to, and its gradient summed over, all G weights.
            w = torch.mm(d, self.w_decoder.weight.t()).view(groups, self.in_features, self.out_features)
            bias = bias + xg @ self.w_decoder.bias.view(self.in_features, self.out_features)
        y = torch.baddbmm(bias, xg, w)  # eq. (5) for every agent at once: [G, R, out]
        order = own + shared
        inverse = [order.index(k) for k in range(len(order))]
        return y.view(*g_shape, *r_shape, self.out_features).permute(*inverse, -1).contiguous()

    def _per_row(self, x: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """A latent per row (training): every row generates its own weight, then a batch of
        ``[1, in] @ [in, out]`` products (see the class docstring for the cost)."""
        w, b = self.generate(latent)
        return (
            torch.bmm(
                x.reshape(-1, 1, self.in_features), w.reshape(-1, self.in_features, self.out_features)
            ).view(*x.shape[:-1], self.out_features)
            + b
        )


class InferenceNet(nn.Module):
    """V_I(o_g, mu, sigma) of eqs. (6) and (11): a 3-layer MLP critic of the team's latents.

    Args:
        global_obs_dim: size of o_g.
        latent_dim: L.
        n_agents: the team size for ``pooling="concat"`` (the paper: all agents' mu and
            sigma concatenated, so the input size depends on n).
        pooling: ``"concat"`` (paper) or ``"mean"``: a shared per-agent embedding of
            (mu_i, sigma_i), mean-pooled over agents (permutation invariant, any n), then
            concatenated with o_g (Deep Sets), for zero-shot changes of team size.
    """

    def __init__(
        self,
        global_obs_dim: int,
        latent_dim: int = 3,
        n_agents: int | None = None,
        hidden: int = 64,
        pooling: str = "concat",
    ) -> None:
        super().__init__()
        check_choice("pooling", pooling, ("concat", "mean"))
        check_int("global_obs_dim", global_obs_dim, 0)
        check_int("latent_dim", latent_dim, 1)
        self.pooling, self.latent_dim, self.global_obs_dim = pooling, latent_dim, global_obs_dim
        if pooling == "concat":
            if n_agents is None:
                raise ValueError(
                    "n_agents is required for pooling='concat' (the input size is 2 * n * L + |o_g|)"
                )
            check_int("n_agents", n_agents, 1)
            self.n_agents = n_agents
            self.net = mlp([global_obs_dim + 2 * n_agents * latent_dim, hidden, hidden, 1])
        else:
            self.n_agents = None
            self.embed = mlp([2 * latent_dim, hidden, hidden], final_activation=True)
            self.net = mlp([global_obs_dim + hidden, hidden, hidden, 1])

    def forward(self, global_obs: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``global_obs [..., G]``, ``mu, sigma [..., n, L]`` -> ``V_I [...]``."""
        mu = _as_input("mu", mu, self.latent_dim, self)
        sigma = _as_input("sigma", sigma, self.latent_dim, self)
        global_obs = _as_input("global_obs", global_obs, self.global_obs_dim, self, min_dim=1)
        if self.pooling == "concat":
            if mu.shape[-2] != self.n_agents:
                raise ValueError(
                    f"this InferenceNet concatenates n_agents={self.n_agents} latents, got n={mu.shape[-2]} "
                    "(use pooling='mean' for other team sizes)"
                )
            team = torch.cat([mu, sigma], -1).flatten(-2)
        else:
            team = self.embed(torch.cat([mu, sigma], -1)).mean(-2)
        return self.net(torch.cat([global_obs, team], -1)).squeeze(-1)


class SHPPOActor(nn.Module):
    """A parameter-shared actor with one HeteLayer: the SHPPO ActorNet (Fig. 2c).

    ``obs -> trunk MLP -> [GRU] -> HeteLayer(latent) -> ReLU -> head -> logits / means``.
    ``hete_position`` moves the HeteLayer: ``"after_trunk"`` (default), ``"head"`` (the
    HeteLayer *is* the output layer) or an integer k: replace the k-th Linear of the trunk.
    Everything except the HeteLayer's generated weights is shared by all agents.

    Args:
        obs_dim: O. out_dim: number of actions (logits) or action dims.
        hidden: width (64, Table IV). trunk_layers: Linear layers before the GRU.
        rnn: use a GRU (hidden 64 in the paper); its state is ``[..., n, hidden]``.
        latent_dim: L. zero_latents: ablation: the HeteLayer always sees l = 0.
    """

    def __init__(
        self,
        obs_dim: int,
        out_dim: int,
        hidden: int = 64,
        trunk_layers: int = 2,
        rnn: bool = False,
        latent_dim: int = 3,
        decoder_hidden: int = 64,
        hete_position: str | int = "after_trunk",
        zero_latents: bool = False,
    ) -> None:
        super().__init__()
        for name, v in (
            ("obs_dim", obs_dim),
            ("out_dim", out_dim),
            ("hidden", hidden),
            ("latent_dim", latent_dim),
        ):
            check_int(name, v, 1)
        check_int("trunk_layers", trunk_layers, 1)
        check_bool("rnn", rnn)
        check_bool("zero_latents", zero_latents)
        self.obs_dim, self.out_dim, self.hidden, self.latent_dim = obs_dim, out_dim, hidden, latent_dim
        self.zero_latents = zero_latents
        sizes = [obs_dim] + [hidden] * trunk_layers
        if isinstance(hete_position, int) and not isinstance(hete_position, bool):
            if not 0 <= hete_position < trunk_layers:
                raise ValueError(
                    f"hete_position must be 'after_trunk', 'head' or a trunk index in [0, {trunk_layers}), "
                    f"got hete_position={hete_position!r}"
                )
        elif not isinstance(hete_position, str):
            raise TypeError(
                f"hete_position must be 'after_trunk', 'head' or a trunk index, got hete_position={hete_position!r}"
            )
        elif hete_position not in ("after_trunk", "head"):
            raise ValueError(
                f"hete_position must be 'after_trunk', 'head' or a trunk index, got hete_position={hete_position!r}"
            )
        self.hete_position = hete_position
        self.trunk = nn.ModuleList(
            nn.Identity() if hete_position == i else nn.Linear(sizes[i], sizes[i + 1])
            for i in range(trunk_layers)
        )
        self.rnn = nn.GRUCell(hidden, hidden) if rnn else None
        if isinstance(hete_position, int):
            k = hete_position
            self.hete = HeteLayer(sizes[k], sizes[k + 1], latent_dim, decoder_hidden)
        elif hete_position == "after_trunk":
            self.hete = HeteLayer(hidden, hidden, latent_dim, decoder_hidden)
        else:
            self.hete = HeteLayer(hidden, out_dim, latent_dim, decoder_hidden)
        self.head = None if hete_position == "head" else nn.Linear(hidden, out_dim)

    def forward(
        self, obs: torch.Tensor, latent: torch.Tensor, hidden_state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One step: ``obs [..., n, O]``, ``latent [..., n, L]`` (detach it for the actor loss,
        eq. 13), ``hidden_state [..., n, H]`` (h^{t-1}; zeros when None)
        -> ``(out [..., n, out_dim], h^t or None without a GRU)``. Integer, bool, half or
        double inputs are cast to the network's dtype."""
        obs = _as_input("obs", obs, self.obs_dim, self)
        latent = self._latent(latent)
        x = self._trunk(obs, latent)
        h_next = None
        if self.rnn is not None:
            h_next = self._gru(x, hidden_state)
            x = h_next
        return self._head(x, latent), h_next

    def forward_sequence(
        self,
        obs: torch.Tensor,
        latent: torch.Tensor,
        hidden_state: torch.Tensor | None = None,
        reset: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A whole sequence, time in dim -3: ``obs [..., T, n, O]``, ``latent [..., T, n, L]``,
        ``hidden_state [..., n, H]`` (h before the first step; zeros when None), ``reset``
        (bool, broadcasting to ``[..., T, n, 1]``: h is zeroed before step t where true, an
        episode start) -> ``(out [..., T, n, out_dim], h^t after each step [..., T, n, H]
        or None)``. Equals calling :meth:`forward` step by step (tested)."""
        obs = _as_input("obs", obs, self.obs_dim, self, min_dim=3)
        latent = self._latent(latent)
        x = self._trunk(obs, latent)  # the layers around the GRU see every step at once
        h_all = None
        if self.rnn is not None:
            h = hidden_state
            if reset is not None:
                reset = reset.to(torch.bool).expand(*x.shape[:-1], 1)
            steps = []
            for t in range(x.shape[-3]):
                if reset is not None and h is not None:
                    h = torch.where(reset.select(-3, t), torch.zeros_like(h), h)
                h = self._gru(x.select(-3, t), h)
                steps.append(h)
            h_all = torch.stack(steps, -3)
            x = h_all
        return self._head(x, latent), h_all

    def _latent(self, latent: torch.Tensor) -> torch.Tensor:
        latent = _as_input("latent", latent, self.latent_dim, self, min_dim=1)
        return torch.zeros_like(latent) if self.zero_latents else latent

    def _trunk(self, obs: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        x = obs
        for k, layer in enumerate(self.trunk):
            x = torch.relu(self.hete(x, latent) if self.hete_position == k else layer(x))
        return x

    def _gru(self, x: torch.Tensor, hidden_state: torch.Tensor | None) -> torch.Tensor:
        if hidden_state is None:
            hidden_state = x.new_zeros(*x.shape[:-1], self.hidden)
        hidden_state = _as_input("hidden_state", hidden_state, self.hidden, self)
        hidden_state = hidden_state.expand(*x.shape[:-1], self.hidden)
        return self.rnn(x.reshape(-1, self.hidden), hidden_state.reshape(-1, self.hidden)).view_as(x)

    def _head(self, x: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        if self.hete_position == "after_trunk":
            x = torch.relu(self.hete(x, latent))
        if self.head is None:
            return self.hete(x, latent)
        return self.head(x)
