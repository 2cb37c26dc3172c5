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

from hetplug._checks import (
    check_bool,
    check_choice,
    check_int,
    check_range,
    check_tensor,
    raise_problems,
    tensor_problems,
)
from hetplug.hookspecs import hookimpl
from hetplug.shppo.losses import discounted_returns, inference_loss, latent_loss
from hetplug.shppo.modules import InferenceNet, LatentNet
from hetplug.state import (
    check_module_state,
    check_optimizer_state,
    read_versioned,
    require_keys,
    snapshot,
    versioned,
)
from hetplug.types import HostObjects, HostSpec, TrajectoryBatch, check_batch, check_reconfigure, host_object

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
    check_inputs: bool = True
    """Refuse NaN or inf observations, states, rewards and returns before any optimiser
    step, and skip a batch without a valid step (one host synchronisation per update);
    False once a pipeline is trusted."""

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
        for name in ("value_loss", "entropy_loss", "distance_loss", "zero_latent_inputs", "zero_latents",
                     "check_inputs"):  # fmt: skip
            check_bool(name, getattr(self, name))


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
            raise TypeError(
                f"latent_net must be a hetplug.shppo.LatentNet, got latent_net={type(latent_net).__name__}"
            )
        self.latent_net = latent_net
        self._latent_opt = torch.optim.Adam(latent_net.parameters(), lr=self.config.latent_lr)

    @hookimpl
    def hetplug_configure(self, spec: HostSpec) -> None:
        if check_reconfigure(self.spec, spec, "shppo"):
            return  # configured with this very spec already
        host_gamma = spec.extra.get("gamma")
        if host_gamma is not None:
            check_range("HostSpec.extra['gamma']", host_gamma, 0.0, 1.0)
        self.spec = spec

    @property
    def gamma(self) -> float:
        """The discount of R: the option, else the host's, else Table V's 0.95."""
        if self.config.gamma is not None:
            return self.config.gamma
        host = None if self.spec is None else self.spec.extra.get("gamma")
        return PAPER_GAMMA if host is None else float(host)

    @hookimpl
    def hetplug_bind(self, host: HostObjects) -> None:
        how = "build the actor from hetplug's SHPPO model, which runs one"
        self.bind(host_object(host, "latent_net", "shppo", "LatentNet", how))

    def _new_inference(
        self, global_obs_dim: int, n_agents: int | None, device: torch.device
    ) -> tuple[InferenceNet, torch.optim.Optimizer]:
        c = self.config
        net = InferenceNet(global_obs_dim, self.latent_net.latent_dim, n_agents, c.hidden, c.pooling).to(
            device
        )
        return net, torch.optim.Adam(net.parameters(), lr=c.inference_lr)

    def _batch_inputs(self, batch: TrajectoryBatch) -> tuple[torch.Tensor, ...]:
        """``(obs, global_obs, hidden, returns)`` of a batch, types and shapes checked (free)."""
        if batch.obs is None:
            raise ValueError("the shppo plugin needs batch.obs [B, T, N, O], got batch.obs=None")
        obs = batch.obs
        if obs.dim() != 4:
            raise ValueError(f"batch.obs must be [B, T, N, O], got batch.obs of shape {tuple(obs.shape)}")
        global_obs = batch.state if batch.state is not None else obs.float().mean(-2)
        hidden = batch.extra.get("hidden_state")
        returns = batch.extra.get("returns")
        if returns is not None:
            check_tensor("batch.extra['returns']", returns, (2, 3), "real")
            if returns.dim() == 3:
                returns = returns.squeeze(-1)
            if tuple(returns.shape) != tuple(batch.mask.shape):
                raise ValueError(
                    f"batch.extra['returns'] must be [B, T] = {list(batch.mask.shape)}, got "
                    f"batch.extra['returns'] of shape {tuple(batch.extra['returns'].shape)}"
                )
        return obs, global_obs, hidden, returns

    @hookimpl
    def hetplug_auxiliary_losses(self, batch: TrajectoryBatch, update: int) -> dict[str, Any]:
        """One step of each latent-side optimiser. Everything that can be refused (types,
        shapes, with ``check_inputs`` NaN or inf inputs) is refused before either steps; a
        batch with no trajectory, or (with ``check_inputs``) no valid step, is a no-op."""
        c = self.config
        check_batch(batch, "shppo")
        check_int("update", update, 0)
        if self.latent_net is None:
            raise RuntimeError(
                "the shppo plugin has no LatentNet: call pm.get_plugin('shppo').bind(latent_net) "
                "with the LatentNet your actor uses"
            )
        obs, global_obs, hidden, returns = self._batch_inputs(batch)
        if batch.batch_size == 0:
            return {}
        mask = batch.mask
        if c.check_inputs:  # one host synchronisation: the values, and whether a step is valid
            checks = [
                ("batch.obs", obs, "finite", None),
                ("batch.state", batch.state, "finite", None),
                ("batch.reward", batch.reward, "finite", None),
                ("batch.extra['returns']", returns, "finite", None),
                ("batch.extra['hidden_state']", hidden, "finite", None),
            ]
            flag = tensor_problems(checks)
            ok = (
                torch.ones((), dtype=torch.bool, device=mask.device) if flag is None else flag.to(mask.device)
            )
            ok, any_valid = torch.stack([ok, mask.any()]).tolist()
            raise_problems(torch.tensor(ok), checks)
            if not any_valid:
                return {}  # no valid step: nothing to learn from (documented no-op)
        if returns is None:
            returns = discounted_returns(batch.reward, mask, self.gamma, batch.done)
        if self.inference is None:
            inference, inference_opt = self._new_inference(global_obs.shape[-1], obs.shape[-2], obs.device)
        else:
            inference, inference_opt = self.inference, self._inference_opt

        # Both losses first (every shape error surfaces before an optimiser steps).
        # 1. LatentNet on L_L (eq. 10); the InferenceNet's parameters are constants here.
        mu, sigma = self.latent_net(obs, hidden)
        latent = LatentNet.sample(mu, sigma)
        loss_l, terms = latent_loss(
            inference, global_obs, mu, sigma, latent, c.lambda_e, c.lambda_d, mask,
            c.value_loss, c.entropy_loss, c.distance_loss,
        )  # fmt: skip
        # 2. InferenceNet on L_I (eq. 11) with the latents it was shown.
        loss_i = inference_loss(inference, global_obs, mu, sigma, returns.to(mu.dtype), mask)
        self.inference, self._inference_opt = inference, inference_opt
        self._step(self._latent_opt, loss_l, self.latent_net)
        self._step(inference_opt, loss_i, inference)
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
        """A snapshot (copies, not the live tensors): training on after saving changes
        nothing saved."""
        state: dict[str, Any] = versioned({})
        if self._latent_opt is not None:
            state["latent_optimizer"] = snapshot(self._latent_opt.state_dict())
        if self.inference is not None:
            state["inference_args"] = (self.inference.global_obs_dim, self.inference.n_agents)
            state["inference"] = snapshot(self.inference.state_dict())
            state["inference_optimizer"] = snapshot(self._inference_opt.state_dict())
        return state

    def check_state(self, state: Any) -> dict[str, Any]:
        """Validate a :meth:`state_dict` without changing anything; returns what
        :meth:`load_state_dict` assigns (a new InferenceNet and its optimiser)."""
        where = "shppo"
        state = read_versioned(state, where)
        if ("latent_optimizer" in state or "inference" in state) and self.latent_net is None:
            raise RuntimeError(
                "bind the LatentNet before loading shppo state (pm.get_plugin('shppo').bind(net))"
            )
        if "latent_optimizer" in state:
            check_optimizer_state(
                f"{where} state['latent_optimizer']", self._latent_opt, state["latent_optimizer"]
            )
        net = opt = None
        if "inference" in state:
            require_keys(where, state, ("inference_args", "inference", "inference_optimizer"))
            args = state["inference_args"]
            if not isinstance(args, (tuple, list)) or len(args) != 2:
                raise ValueError(
                    f"{where} state['inference_args'] must be (global_obs_dim, n_agents), got {args!r}"
                )
            check_int(f"{where} state['inference_args'] global_obs_dim", args[0], 0)
            if args[1] is not None:
                check_int(f"{where} state['inference_args'] n_agents", args[1], 1)
            device = next(self.latent_net.parameters()).device
            net, opt = self._new_inference(args[0], args[1] or 1, device)
            check_module_state(f"{where} state['inference']", net, state["inference"])
            check_optimizer_state(f"{where} state['inference_optimizer']", opt, state["inference_optimizer"])
            net.load_state_dict(state["inference"])
            opt.load_state_dict(snapshot(state["inference_optimizer"]))  # torch would alias its tensors
        return {
            "latent_optimizer": state.get("latent_optimizer"),
            "inference": net,
            "inference_optimizer": opt,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores the InferenceNet and both optimisers; the LatentNet's weights are the host's
        (saved with its model), bind it before loading. Validated whole first (a model of
        other dimensions, a truncated state): on any error the plugin is as before."""
        new = self.check_state(state)
        if new["latent_optimizer"] is not None:
            self._latent_opt.load_state_dict(snapshot(new["latent_optimizer"]))
        # saved before the first update (no InferenceNet yet): none after loading either
        self.inference, self._inference_opt = new["inference"], new["inference_optimizer"]
