"""hetplug's models as BenchMARL model configs (registered in ``model_config_registry``).

``hetplug_slot_mlp`` (HetDPS): an MLP whose weights live in per-agent parameter slots
(:class:`hetplug.sharing.SlotMLP`); agent i uses slot ``routing[i]``. All agents routed to
one slot share its parameters, so the ``hetdps`` plugin regroups agents mid-training by
copying/merging slots in place: the experiment, its optimisers, collector and target
networks are never rebuilt (the callback binds them to the plugin).

Import ``hetplug_benchmarl`` (or run ``python -m hetplug_benchmarl.run``) to register them;
``SlotMlpConfig.get_from_yaml()`` reads ``conf/model/layers/hetplug_slot_mlp.yaml`` here.
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

CONF = pathlib.Path(__file__).parent / "conf"
_STANDARD = ("input_spec", "output_spec", "agent_group", "input_has_agent_dim", "n_agents", "centralised",
             "share_params", "device", "action_spec", "model_index", "is_critic")  # fmt: skip


class SlotMlp(Model):
    """BenchMARL ``Model`` around :class:`~hetplug.sharing.SlotMLP`.

    For per-agent (decentralised) inputs ``[..., N, F]``: policies, and the Q-networks of
    IQL/VDN/QMIX. BenchMARL's ``share_params`` is not used: who shares is the routing.
    """

    def __init__(self, num_cells: Sequence[int], activation_class: type[nn.Module], n_slots: int | None,
                 start: str, **kwargs) -> None:  # fmt: skip
        super().__init__(**{k: kwargs.pop(k) for k in _STANDARD})
        if not self.input_has_agent_dim or self.centralised:
            raise ValueError(
                f"hetplug_slot_mlp is a per-agent model (group {self.agent_group!r}); use it for policies "
                "and decentralised Q-networks, and another model for centralised critics "
                "(critic_model_config)"
            )
        in_features = sum(int(spec.shape[-1]) for spec in self.input_spec.values(True, True))
        self.net = SlotMLP(self.n_agents, in_features, self.output_leaf_spec.shape[-1], hidden=tuple(num_cells),
                           n_slots=n_slots, activation=activation_class, start=start).to(self.device)  # fmt: skip

    def _perform_checks(self) -> None:
        super()._perform_checks()
        for key, spec in self.input_spec.items(True, True):
            if len(spec.shape) != 2 or spec.shape[0] != self.n_agents:
                raise ValueError(
                    f"hetplug_slot_mlp input {key} must be [n_agents, features], got {tuple(spec.shape)}"
                )

    def _forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        x = torch.cat([tensordict.get(k) for k in self.in_keys], dim=-1)
        out = self.net(x)
        if not self.output_has_agent_dim:
            out = out[..., 0, :]
        tensordict.set(self.out_key, out)
        return tensordict


@dataclass
class SlotMlpConfig(ModelConfig):
    """Config of :class:`SlotMlp` (yaml ``name: hetplug_slot_mlp``)."""

    num_cells: Sequence[int] = field(default_factory=lambda: [256, 256])
    activation_class: type[nn.Module] = nn.Tanh
    n_slots: int | None = None
    """Preallocated networks (None: one per agent)."""
    start: str = "full"
    """``"full"``: every agent starts in slot 0 (full sharing); ``"none"``: one slot each."""

    @staticmethod
    def associated_class():
        return SlotMlp

    @classmethod
    def get_from_yaml(cls, path: str | None = None) -> SlotMlpConfig:
        path = path or str(CONF / "model" / "layers" / "hetplug_slot_mlp.yaml")
        return cls(**parse_model_config(_read_yaml_config(path)))


model_config_registry["hetplug_slot_mlp"] = SlotMlpConfig
