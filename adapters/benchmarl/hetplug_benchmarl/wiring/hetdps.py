"""HetDPS's wiring: the slot model's parameters, optimiser state and target copies.

Needs from BenchMARL: a group policy built from hetplug's slot model
(:class:`~hetplug_benchmarl.models.SlotModel`, ``model=layers/hetplug_slot_mlp``) whose
``n_slots`` and ``start`` agree with the ``hetdps`` options.

Hands plugins (``HostObjects.parameter_slots``) a :class:`~hetplug.sharing.ParameterSlots`
over the slot parameters (the policy's, which the loss and optimiser hold as the same
tensors), the optimisers' state, and the loss's target copies (``target_*_params``,
separate tensors), including their routing buffers: a sharing plan then regroups agents
in place, and nothing of the experiment is rebuilt.
"""

from __future__ import annotations

import torch

import hetplug
from hetplug.sharing import ParameterSlots, SlotMLP
from hetplug_benchmarl.wiring import Wiring


def slot_modules(module: torch.nn.Module) -> list[SlotMLP]:
    return [m for m in module.modules() if isinstance(m, SlotMLP)]


class HetDPSWiring(Wiring):
    def __init__(self, config: hetplug.HetplugConfig) -> None:
        self.options = config.options.get("hetdps", {}) if "hetdps" in config.plugins else None

    def check(self, exp, group: str) -> None:
        if self.options is None:
            return
        from hetplug.sharing.plugin import HetDPSConfig

        found = slot_modules(exp.group_policies[group])
        if len(found) != 1:
            raise ValueError(
                f"plugin 'hetdps' needs the group's policy built from hetplug's slot model "
                f"(model_config=hetplug_benchmarl.SlotModelConfig, or model=layers/hetplug_slot_mlp); "
                f"group {group!r} has {len(found)} slot models"
            )
        net, config = found[0], HetDPSConfig(**self.options)
        n_slots = net.weights[0].shape[0]
        wanted = config.n_slots or len(exp.group_map[group])
        if n_slots != wanted:
            raise ValueError(
                f"hetdps.n_slots={wanted} differs from the slot model's n_slots={n_slots} "
                f"(group {group!r}); set both to the same value"
            )
        start = "full" if bool((net.routing == 0).all()) else "none"
        if not exp.config.restore_file and start != config.start:
            raise ValueError(
                f"hetdps.start={config.start!r} differs from the slot model's start (routing "
                f"{net.routing.tolist()}, group {group!r}); set both to the same value"
            )

    def host_objects(self, exp, group: str) -> dict:
        found = slot_modules(exp.group_policies[group])
        if len(found) != 1:
            return {}
        net = found[0]
        online = {t.data_ptr(): name for name, t in [*net.named_parameters(), *net.named_buffers()]}
        targets, routing = [], [net.routing]
        loss = exp.losses[group]
        for attr in dir(loss):
            if not attr.startswith("target_") or not attr.endswith("_params"):
                continue
            source = getattr(loss, attr.removeprefix("target_"), None)
            target = getattr(loss, attr, None)
            if source is None or target is None or not hasattr(source, "items"):
                continue
            for key, value in source.items(True, True):
                name = online.get(value.data_ptr())
                if name is None:
                    continue
                copy = target.get(key)
                (routing if name == "routing" else targets).append(
                    copy.data if hasattr(copy, "data") else copy
                )
        optimisers = list(exp.optimizers[group].values())
        params = [p for _, p in net.named_parameters()]
        return {"parameter_slots": ParameterSlots(params, optimisers, targets=targets, routing=routing)}
