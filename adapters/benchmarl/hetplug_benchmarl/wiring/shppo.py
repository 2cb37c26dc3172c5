"""SHPPO's wiring: the SHPPO model's LatentNet and the batch its latent losses train on.

Needs from BenchMARL: an on-policy algorithm (the paper's PPO family) whose group policy
is built from hetplug's SHPPO model (:class:`~hetplug_benchmarl.models.SHPPOModel`,
``model=layers/hetplug_shppo``), with the latent sizes the ``shppo`` options name.

Hands plugins (``HostObjects.latent_net``) the model's LatentNet. Every iteration the
auxiliary losses train on the collected batch with the actor's own input (its input
keys concatenated) as ``obs``; afterwards the LatentNet's gradients are cleared, since
BenchMARL's optimiser holds those parameters too and must not step on them.
"""

from __future__ import annotations

import torch

import hetplug
from hetplug_benchmarl.models import SHPPOModel
from hetplug_benchmarl.wiring import GroupRun, Wiring


def shppo_models(exp, group: str) -> list[SHPPOModel]:
    return [m for m in exp.group_policies[group].modules() if isinstance(m, SHPPOModel)]


def shppo_model(exp, group: str) -> SHPPOModel:
    """The :class:`SHPPOModel` in ``group``'s policy (raises naming the fix if there is none)."""
    found = shppo_models(exp, group)
    if len(found) != 1:
        raise ValueError(
            "plugin 'shppo' needs the group's policy built from hetplug's SHPPO model "
            "(model_config=hetplug_benchmarl.SHPPOModelConfig, or model=layers/hetplug_shppo); "
            f"group {group!r} has {len(found)}"
        )
    return found[0]


class SHPPOWiring(Wiring):
    def __init__(self, config: hetplug.HetplugConfig) -> None:
        self.options = config.options.get("shppo", {}) if "shppo" in config.plugins else None

    def check_algorithm(self, algorithm: type, on_policy: bool) -> None:
        if self.options is not None and not on_policy:
            raise ValueError(
                f"plugin 'shppo' is not available with off-policy {algorithm.__name__}: "
                "SHPPO trains the actor of PPO-style algorithms (mappo, ippo)"
            )

    def check(self, exp, group: str) -> None:
        if self.options is None:
            return
        model = shppo_model(exp, group)
        for name in ("latent_dim", "decoder_hidden"):
            if name in self.options and self.options[name] != getattr(model, name):
                raise ValueError(
                    f"shppo.{name}={self.options[name]} differs from the SHPPO model's {name}="
                    f"{getattr(model, name)} (group {group!r}); set both to the same value"
                )

    def host_objects(self, exp, group: str) -> dict:
        found = shppo_models(exp, group)
        return {"latent_net": found[0].latent_net} if len(found) == 1 else {}

    def collected(self, exp, batch, run: GroupRun) -> None:
        found = shppo_models(exp, run.group)
        if len(found) == 1:  # the actor's own input, for the latent losses
            x = torch.cat([batch.get(k) for k in found[0].in_keys], dim=-1)
            run.auxiliary_batch = run.collected.replace(obs=x.detach())

    def train_end(self, exp, run: GroupRun) -> None:
        found = shppo_models(exp, run.group)
        if len(found) == 1:
            for p in found[0].latent_net.parameters():
                p.grad = None  # BenchMARL's optimiser (it holds them too) must not reuse them
