"""hetplug's models as BenchMARL model configs (registered in ``model_config_registry``).

``hetplug_shppo`` (SHPPO): a parameter-shared actor with one HeteLayer whose weights the
LatentNet generates per agent (eqs. 4-5), recurrent by default (the paper's ActorNet);
it acts with sampled latents while exploring and stores them with the step; the ``shppo``
plugin trains the LatentNet with its own optimiser. Its parameters do not depend on the
team size, so a trained policy runs unchanged with another number of agents
(:mod:`hetplug_benchmarl.transfer`).

``hetplug_slot_mlp`` (HetDPS): an MLP whose weights live in per-agent parameter slots
(:class:`hetplug.sharing.SlotMLP`); agent i uses slot ``routing[i]``. All agents routed to
one slot share its parameters, so the ``hetdps`` plugin regroups agents mid-training by
copying/merging slots in place: the experiment, its optimisers, collector and target
networks are never rebuilt (the callback binds them to the plugin).

Import ``hetplug_benchmarl`` (or run ``python -m hetplug_benchmarl.run``) to register them;
``SlotModelConfig.get_from_yaml()`` reads ``conf/model/layers/hetplug_slot_mlp.yaml`` here.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from benchmarl.models import model_config_registry
from benchmarl.models.common import Model, ModelConfig, parse_model_config
from benchmarl.utils import _read_yaml_config
from tensordict import TensorDictBase
from torch import nn
from torchrl.data.tensor_specs import Composite, Unbounded
from torchrl.envs.utils import ExplorationType, exploration_type
from torchrl.modules import recurrent_mode

from hetplug.sharing import SlotMLP
from hetplug.shppo import LatentNet, SHPPOActor

CONF = pathlib.Path(__file__).parent / "conf"
_STANDARD = ("input_spec", "output_spec", "agent_group", "input_has_agent_dim", "n_agents", "centralised",
             "share_params", "device", "action_spec", "model_index", "is_critic")  # fmt: skip


class _PerAgentModel(Model):
    """A BenchMARL model over per-agent inputs ``[..., N, F]`` (policies, decentralised
    Q-networks); it refuses centralised inputs, naming the fix."""

    yaml_name = ""

    def __init__(self, **kwargs) -> None:
        super().__init__(**{k: kwargs.pop(k) for k in _STANDARD})
        if not self.input_has_agent_dim or self.centralised:
            raise ValueError(
                f"{self.yaml_name} is a per-agent model (group {self.agent_group!r}); use it for policies "
                "and decentralised Q-networks, and another model for centralised critics "
                "(critic_model_config)"
            )
        self.feature_keys = list(self.in_keys)  # the observation entries (recurrent models add more)
        self.in_features = sum(int(spec.shape[-1]) for spec in self.input_spec.values(True, True))
        self.out_features = self.output_leaf_spec.shape[-1]

    def _perform_checks(self) -> None:
        super()._perform_checks()
        for key, spec in self.input_spec.items(True, True):
            if len(spec.shape) != 2 or spec.shape[0] != self.n_agents:
                raise ValueError(
                    f"{self.yaml_name} input {key} must be [n_agents, features], got {tuple(spec.shape)}"
                )

    def _inputs(self, tensordict: TensorDictBase) -> torch.Tensor:
        return torch.cat([tensordict.get(k) for k in self.feature_keys], dim=-1)


class SlotModel(_PerAgentModel):
    """BenchMARL ``Model`` around :class:`~hetplug.sharing.SlotMLP`.

    BenchMARL's ``share_params`` is not used: who shares is the routing.
    """

    yaml_name = "hetplug_slot_mlp"

    def __init__(self, num_cells: Sequence[int], activation_class: type[nn.Module], n_slots: int | None,
                 start: str, **kwargs) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.net = SlotMLP(self.n_agents, self.in_features, self.out_features, hidden=tuple(num_cells),
                           n_slots=n_slots, activation=activation_class, start=start).to(self.device)  # fmt: skip

    def _forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        out = self.net(self._inputs(tensordict))
        if not self.output_has_agent_dim:
            out = out[..., 0, :]
        tensordict.set(self.out_key, out)
        return tensordict


class _HetplugModelConfig(ModelConfig):
    """``get_from_yaml()`` reads hetplug_benchmarl's own ``conf/model/layers/<name>.yaml``."""

    @classmethod
    def get_from_yaml(cls, path: str | None = None):
        path = path or str(CONF / "model" / "layers" / f"{cls.associated_class().yaml_name}.yaml")
        return cls(**parse_model_config(_read_yaml_config(path)))


@dataclass
class SlotModelConfig(_HetplugModelConfig):
    """Config of :class:`SlotModel` (yaml ``name: hetplug_slot_mlp``)."""

    num_cells: Sequence[int] = field(default_factory=lambda: [256, 256])
    activation_class: type[nn.Module] = nn.Tanh
    n_slots: int | None = None
    """Preallocated networks (None: one per agent)."""
    start: str = "full"
    """``"full"``: every agent starts in slot 0 (full sharing); ``"none"``: one slot each."""

    @staticmethod
    def associated_class():
        return SlotModel


#: entries of an agent group that SHPPO's model writes while acting and reads back in the loss
LATENT_KEY = "hetplug_latent"  # [*B, N, L] the latent each agent acted with (Algorithm 1)
MEMORY_KEY = "hetplug_memory"  # [*B, N, H] recurrent form: h^{t-1}, what the LatentNet read


def reevaluating() -> bool:
    """Whether a policy call re-evaluates stored steps (a TorchRL loss: its ``forward`` and
    ``*_loss`` methods run in ``recurrent_mode``) rather than acting."""
    return bool(recurrent_mode())


def exploring() -> bool:
    """Whether the current call acts stochastically: TorchRL's exploration type is RANDOM
    (BenchMARL's collector; its evaluation unless ``evaluation_deterministic_actions``)."""
    return exploration_type() == ExplorationType.RANDOM


class SHPPOModel(_PerAgentModel):
    """BenchMARL ``Model``: SHPPO's agent, ``LatentNet`` and ``SHPPOActor`` (eqs. 4-5).

    **Acting** (Algorithm 1): ``(mu, sigma) = LatentNet(o, h^{t-1})``; the latent is
    ``l ~ N(mu, sigma)`` while exploring (TorchRL's ``ExplorationType.RANDOM``, the
    collector's) and ``mu`` otherwise (deterministic evaluation); the actor runs with it.
    The latent is written to the group's ``hetplug_latent`` entry, so the rollout stores it
    with the step. The LatentNet runs without gradient: the actor loss does not train it
    (eq. 13); the ``shppo`` plugin does.

    **Re-evaluating** (inside a TorchRL loss, :func:`reevaluating`): the actor runs with the
    stored latent of each step, so PPO's ratio compares the HeteLayer weights that acted.

    **Recurrent form** (``rnn=True``, the paper's ActorNet; BenchMARL's sequence-model
    conventions, as its ``Gru``): the GRU's state travels in the TensorDict under the private
    key ``(group, "_hidden_shppo_<i>")`` (a spec from ``get_model_state_spec``, zeroed at
    ``is_init``), and the LatentNet reads (o, h^{t-1}). The state before each step is also
    stored as ``hetplug_memory``; in the loss the GRU unrolls each stored sequence from
    its first step's stored state, resetting at ``is_init``. BenchMARL then stores
    sequences (prioritised replay does not support that: use ``rnn=False`` with per/shep).
    """

    yaml_name = "hetplug_shppo"

    def __init__(self, num_cells: int, trunk_layers: int, latent_dim: int, decoder_hidden: int, rnn: bool,
                 **kwargs) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.latent_dim, self.decoder_hidden, self.rnn = latent_dim, decoder_hidden, rnn
        group = self.agent_group
        self.latent_key, self.memory_key = (group, LATENT_KEY), (group, MEMORY_KEY)
        if rnn:
            self.hidden_state_name = (group, f"_hidden_shppo_{self.model_index}")
            self.in_keys = [*self.feature_keys, "is_init", self.hidden_state_name]
        memory = num_cells if rnn else 0
        self.latent_net = LatentNet(self.in_features, memory, latent_dim, hidden=num_cells).to(self.device)
        self.actor = SHPPOActor(self.in_features, self.out_features, hidden=num_cells, trunk_layers=trunk_layers,
                                rnn=rnn, latent_dim=latent_dim, decoder_hidden=decoder_hidden).to(self.device)  # fmt: skip

    def _forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        x = self._inputs(tensordict)
        if reevaluating():
            out = self._reevaluate(tensordict, x)
        else:
            out = self._act(tensordict, x)
        tensordict.set(self.out_key, out)
        return tensordict

    def _act(self, tensordict: TensorDictBase, x: torch.Tensor) -> torch.Tensor:
        h_prev = None
        if self.rnn:
            h_prev = tensordict.get(self.hidden_state_name, None)
            if h_prev is None:
                h_prev = x.new_zeros(*x.shape[:-1], self.actor.hidden)
            is_init = tensordict.get("is_init", None)
            if is_init is not None:  # [*B, 1] -> [*B, 1, 1] against [*B, N, H]
                h_prev = torch.where(is_init.unsqueeze(-2), torch.zeros_like(h_prev), h_prev)
        with torch.no_grad():  # eq. (13): the actor sees the latent as a constant
            mu, sigma = self.latent_net(x, h_prev)
            latent = LatentNet.acting_latent(mu, sigma, exploring())
        out, h = self.actor(x, latent, h_prev)
        tensordict.set(self.latent_key, latent)
        if self.rnn:
            tensordict.set(self.memory_key, h_prev)
            tensordict.set(("next", *self.hidden_state_name), h)
        return out

    def _reevaluate(self, tensordict: TensorDictBase, x: torch.Tensor) -> torch.Tensor:
        latent = tensordict.get(self.latent_key, None)
        if latent is None:
            raise KeyError(
                f"SHPPO's model re-evaluates stored steps with the latent each agent acted with, "
                f"{self.latent_key}, which the rollout stores; this batch has none"
            )
        if not self.rnn:
            return self.actor(x, latent)[0]
        if tensordict.batch_dims < 2:
            raise ValueError(
                "the recurrent SHPPO model re-evaluates sequences [*B, T] (BenchMARL stores them for "
                f"recurrent models); got a batch of shape {tuple(tensordict.batch_size)}"
            )
        memory = tensordict.get(self.memory_key, None)
        h0 = None if memory is None else memory.select(-3, 0)
        is_init = tensordict.get("is_init", None)
        reset = None if is_init is None else is_init.unsqueeze(-2)
        return self.actor.forward_sequence(x, latent, h0, reset)[0]


@dataclass
class SHPPOModelConfig(_HetplugModelConfig):
    """Config of :class:`SHPPOModel` (yaml ``name: hetplug_shppo``); Table IV sizes."""

    num_cells: int = 64
    """MLP width and GRU hidden size (Table IV: 64)."""
    trunk_layers: int = 2
    latent_dim: int = 3
    """Latent size (Table IV: 3)."""
    decoder_hidden: int = 64
    """HeteLayer decoder width (Table IV: 64)."""
    rnn: bool = True
    """The paper's recurrent ActorNet (a GRU; the LatentNet reads h^{t-1}). False: the
    feed-forward form (needed with prioritised replay, which stores no sequences)."""

    @staticmethod
    def associated_class():
        return SHPPOModel

    @property
    def is_rnn(self) -> bool:
        return self.rnn

    def get_model_state_spec(self, model_index: int = 0) -> Composite:
        if not self.rnn:
            return Composite()
        return Composite({f"_hidden_shppo_{model_index}": Unbounded(shape=(self.num_cells,))})


model_config_registry["hetplug_slot_mlp"] = SlotModelConfig
model_config_registry["hetplug_shppo"] = SHPPOModelConfig
