"""hetplug's models as BenchMARL model configs (registered in ``model_config_registry``).

``hetplug_shppo`` (SHPPO): a parameter-shared actor with one HeteLayer whose weights the
LatentNet generates per agent (eqs. 4-5); the ``shppo`` plugin trains the LatentNet with
its own optimiser. Its parameters do not depend on the team size, so a trained policy
runs unchanged with another number of agents.

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
        return torch.cat([tensordict.get(k) for k in self.in_keys], dim=-1)


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


class SHPPOModel(_PerAgentModel):
    """BenchMARL ``Model``: ``obs [..., N, F] -> LatentNet -> mu -> SHPPOActor(obs, mu)``.

    The actor acts with ``l_i = mu_i``, detached (eq. 13): the rollout stores no sampled
    latent, and the mean keeps the policy the PPO loss re-evaluates identical to the one
    that acted. The plugin's latent losses (eqs. 7-10) sample latents.
    """

    yaml_name = "hetplug_shppo"

    def __init__(self, num_cells: int, trunk_layers: int, latent_dim: int, decoder_hidden: int,
                 **kwargs) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.latent_dim, self.decoder_hidden = latent_dim, decoder_hidden
        self.latent_net = LatentNet(self.in_features, 0, latent_dim, hidden=num_cells).to(self.device)
        self.actor = SHPPOActor(self.in_features, self.out_features, hidden=num_cells, trunk_layers=trunk_layers,
                                latent_dim=latent_dim, decoder_hidden=decoder_hidden).to(self.device)  # fmt: skip

    def _forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        x = self._inputs(tensordict)
        with torch.no_grad():
            mu, _ = self.latent_net(x)
        out, _ = self.actor(x, mu)
        tensordict.set(self.out_key, out)
        return tensordict


@dataclass
class SHPPOModelConfig(_HetplugModelConfig):
    """Config of :class:`SHPPOModel` (yaml ``name: hetplug_shppo``); Table IV sizes."""

    num_cells: int = 64
    trunk_layers: int = 2
    latent_dim: int = 3
    decoder_hidden: int = 64

    @staticmethod
    def associated_class():
        return SHPPOModel


model_config_registry["hetplug_slot_mlp"] = SlotModelConfig
model_config_registry["hetplug_shppo"] = SHPPOModelConfig


def copy_policy(source, target, group: str = "agents") -> None:
    """Load ``source``'s trained policy for ``group`` into ``target`` (another experiment,
    e.g. the same task with a different number of agents). SHPPO's parameters do not
    depend on the team size, so this is its zero-shot transfer; any shape mismatch is
    reported by name."""
    state = source.group_policies[group].state_dict()
    mine = target.group_policies[group].state_dict()
    for key, value in state.items():
        if key not in mine:
            raise ValueError(f"policy parameter {key!r} is missing from the target experiment's policy")
        if mine[key].shape != value.shape:
            raise ValueError(
                f"policy parameter {key!r} has shape {tuple(value.shape)} in the source and "
                f"{tuple(mine[key].shape)} in the target (inputs that depend on the team size?)"
            )
    target.group_policies[group].load_state_dict(state)
