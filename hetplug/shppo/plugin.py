"""The ``shppo`` plugin: trains SHPPO's LatentNet and InferenceNet beside the host's PPO.

The host owns the actor (:class:`SHPPOActor`, built through its model API) and runs the
LatentNet at every step to get latents (``SHPPOAgent`` bundles both). It binds the
LatentNet to the plugin once; after each PPO update it calls ``hetplug_auxiliary_losses``
with the rollout, and the plugin takes one step of each of its own optimisers:

1. LatentNet on L_L (eq. 10), the InferenceNet frozen;
2. InferenceNet on L_I (eq. 11), mu and sigma detached.

Batch fields read: ``obs [B, T, N, O]``, ``state [B, T, S]`` (o_g; when absent, the
mean of the agents' observations), ``mask``, ``reward``/``done`` (returns computed with
the host's discount, ``HostSpec.extra["gamma"]``, unless the option ``gamma`` is set or
the host passes ``extra["returns"] [B, T]``), and
``extra["hidden_state"] [B, T, N, H]`` when the LatentNet reads the actor's memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hetplug._checks import check_choice, check_int, check_range
from hetplug.hookspecs import hookimpl
from hetplug.shppo.losses import discounted_returns, inference_loss, latent_loss
from hetplug.shppo.modules import InferenceNet, LatentNet
from hetplug.state import read_versioned, versioned
from hetplug.types import HostObjects, HostSpec, TrajectoryBatch

#: Table V's discount, used when neither the options nor the host give one
PAPER_GAMMA = 0.95


@dataclass
class SHPPOConfig:
    """The ``shppo`` options. Defaults: Tables IV-V of the paper (docs/benchmarl.md has the
    table of every default against its source)."""

    lambda_e: float = 0.01
    """Weight of L_e in L_L, eq. (10) (Table V: 0.01)."""
    lambda_d: float = 0.1
    """Weight of L_d in L_L, eq. (10) (Table V: 0.1)."""
    latent_lr: float = 5e-4
    """Adam learning rate of the LatentNet (Table V: 0.0005)."""
    inference_lr: float = 5e-3
    """Adam learning rate of the InferenceNet (Table V: 0.005)."""
    hidden: int = 64
    """InferenceNet width (Table IV)."""
    pooling: str = "concat"
    """InferenceNet input: ``"concat"``, every agent's (mu_i, sigma_i) concatenated with the
    global observation (eqs. 6-9, the paper; its input size fixes the team size during
    training), or ``"mean"``: a shared embedding of (mu_i, sigma_i) mean-pooled over the
    agents (permutation invariant, any team size), for training that continues after a
    team-size change. Execution never runs the InferenceNet, so zero-shot evaluation at
    another team size works with either."""
    gamma: float | None = None
    """Discount of the return R that V_I regresses on (eq. 11) when the host passes no
    returns. None: the host's discount (``HostSpec.extra["gamma"]``: BenchMARL's
    experiment ``gamma``, EPyMARL's ``args.gamma``), or Table V's 0.95 for a host that
    gives none."""
    max_grad_norm: float | None = 10.0
    value_loss: bool = True
    """Ablation switch for L_v (section V-E, "without L_v")."""
    entropy_loss: bool = True
    """Ablation switch for L_e (section V-E, "without L_e")."""
    distance_loss: bool = True
    """Ablation switch for L_d (section V-E, "without L_d")."""
    zero_latent_inputs: bool = False
    """Ablation (section V-E, Fig. 7a-b): the LatentNet sees zeros instead of (o, h), so
    latents cannot follow the observations. Applied by the host to the model it acts with."""
    zero_latents: bool = False
    """Ablation (section V-E, Fig. 7a-b): every latent is replaced by zeros, removing latent
    learning from the actor. Applied by the host to the model it acts with."""
    latent_dim: int = 3
    """Latent size L of the actor a host builds for SHPPO (Table IV: 3). Hosts whose model
    config carries its own size (BenchMARL's ``hetplug_shppo``) check that the two agree."""
    decoder_hidden: int = 64
    """Width of the HeteLayer's decoder (Table IV: 64), likewise."""

    def __post_init__(self) -> None:
        for name in ("lambda_e", "lambda_d"):
            check_range(name, getattr(self, name), 0.0)
        for name in ("latent_lr", "inference_lr"):
            check_range(name, getattr(self, name), 0.0, low_open=True)
        check_int("hidden", self.hidden, 1)
        check_int("latent_dim", self.latent_dim, 1)
        check_int("decoder_hidden", self.decoder_hidden, 1)
        check_choice("pooling", self.pooling, ("mean", "concat"))
        if self.gamma is not None:
            check_range("gamma", self.gamma, 0.0, 1.0)
        if self.max_grad_norm is not None:
            check_range("max_grad_norm", self.max_grad_norm, 0.0, low_open=True)
        for name in ("value_loss", "entropy_loss", "distance_loss", "zero_latent_inputs", "zero_latents"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {name}={getattr(self, name)!r}")


class SHPPOPlugin:
    """SHPPO's latent learning as a hetplug plugin (name ``shppo``)."""

    config_class = SHPPOConfig

    def __init__(self, config: SHPPOConfig | None = None, latent_net: LatentNet | None = None) -> None:
        self.config = config or SHPPOConfig()
        self.spec: HostSpec | None = None
        self.latent_net: LatentNet | None = None
        self.inference: InferenceNet | None = None
        self._latent_opt: torch.optim.Optimizer | None = None
        self._inference_opt: torch.optim.Optimizer | None = None
        if latent_net is not None:
            self.bind(latent_net)

    def bind(self, latent_net: LatentNet) -> None:
        """Give the plugin the LatentNet the host's actor uses (adapters do this)."""
        if not isinstance(latent_net, LatentNet):
            raise ValueError(f"latent_net must be a hetplug.shppo.LatentNet, got {type(latent_net).__name__}")
        self.latent_net = latent_net
        self._latent_opt = torch.optim.Adam(latent_net.parameters(), lr=self.config.latent_lr)

    @hookimpl
    def hetplug_configure(self, spec: HostSpec) -> None:
        self.spec = spec
        host_gamma = spec.extra.get("gamma")
        if host_gamma is not None:
            check_range("the host's gamma (HostSpec.extra['gamma'])", float(host_gamma), 0.0, 1.0)

    @property
    def gamma(self) -> float:
        """The discount of R: the option, else the host's, else Table V's 0.95."""
        if self.config.gamma is not None:
            return self.config.gamma
        host = None if self.spec is None else self.spec.extra.get("gamma")
        return PAPER_GAMMA if host is None else float(host)

    @hookimpl
    def hetplug_bind(self, host: HostObjects) -> None:
        if host.latent_net is None:
            raise ValueError(
                "the shppo plugin needs the host's LatentNet (HostObjects.latent_net): build the "
                "actor from hetplug's SHPPO model, which runs one"
            )
        self.bind(host.latent_net)

    def _build_inference(self, global_obs_dim: int, n_agents: int, device: torch.device) -> InferenceNet:
        c = self.config
        net = InferenceNet(global_obs_dim, self.latent_net.latent_dim, n_agents, c.hidden, c.pooling).to(
            device
        )
        self.inference = net
        self._inference_opt = torch.optim.Adam(net.parameters(), lr=c.inference_lr)
        return net

    @hookimpl
    def hetplug_auxiliary_losses(self, batch: TrajectoryBatch, update: int) -> dict[str, Any]:
        c = self.config
        if self.latent_net is None:
            raise RuntimeError(
                "the shppo plugin has no LatentNet: call pm.get_plugin('shppo').bind(latent_net) "
                "with the LatentNet your actor uses"
            )
        if batch.obs is None:
            raise ValueError("the shppo plugin needs batch.obs [B, T, N, O]")
        obs = batch.obs
        global_obs = batch.state if batch.state is not None else obs.mean(-2)
        hidden = batch.extra.get("hidden_state")
        returns = batch.extra.get("returns")
        if returns is None:
            returns = discounted_returns(batch.reward, batch.mask, self.gamma, batch.done)
        elif returns.dim() == 3:
            returns = returns.squeeze(-1)
        mask = batch.mask
        inference = self.inference or self._build_inference(global_obs.shape[-1], obs.shape[-2], obs.device)

        # 1. LatentNet on L_L (eq. 10); the InferenceNet's parameters are constants here.
        mu, sigma = self.latent_net(obs, hidden)
        latent = LatentNet.sample(mu, sigma)
        loss_l, terms = latent_loss(
            inference, global_obs, mu, sigma, latent, c.lambda_e, c.lambda_d, mask,
            c.value_loss, c.entropy_loss, c.distance_loss,
        )  # fmt: skip
        self._step(self._latent_opt, loss_l, self.latent_net)
        # 2. InferenceNet on L_I (eq. 11) with the latents it was shown.
        loss_i = inference_loss(inference, global_obs, mu, sigma, returns.to(mu.dtype), mask)
        self._step(self._inference_opt, loss_i, inference)
        out = {f"shppo/{k}": v for k, v in terms.items()}
        out["shppo/inference_loss"] = loss_i.detach()
        out["shppo/sigma_mean"] = sigma.detach().mean()
        return out

    def _step(self, opt: torch.optim.Optimizer, loss: torch.Tensor, module: nn.Module) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(module.parameters(), self.config.max_grad_norm)
        opt.step()

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = versioned({})
        if self._latent_opt is not None:
            state["latent_optimizer"] = self._latent_opt.state_dict()
        if self.inference is not None:
            state["inference_args"] = (self.inference.global_obs_dim, self.inference.n_agents)
            state["inference"] = self.inference.state_dict()
            state["inference_optimizer"] = self._inference_opt.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores the InferenceNet and both optimisers; the LatentNet's weights are the host's
        (saved with its model), bind it before loading."""
        state = read_versioned(state, "shppo")
        if "latent_optimizer" in state:
            if self._latent_opt is None:
                raise RuntimeError("bind the LatentNet before loading shppo state")
            self._latent_opt.load_state_dict(state["latent_optimizer"])
        if "inference" in state:
            g, n = state["inference_args"]
            device = next(self.latent_net.parameters()).device
            net = self._build_inference(g, n or 1, device)
            net.load_state_dict(state["inference"])
            self._inference_opt.load_state_dict(state["inference_optimizer"])
