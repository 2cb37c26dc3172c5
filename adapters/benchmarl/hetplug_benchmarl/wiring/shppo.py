"""SHPPO's wiring: the SHPPO model's LatentNet and the batch its latent losses train on.

Needs from BenchMARL: an on-policy algorithm (the paper's backbone is HAPPO, ``happo``;
MAPPO and IPPO work too) whose group policy is built from hetplug's SHPPO model
(:class:`~hetplug_benchmarl.models.SHPPOModel`, ``model=layers/hetplug_shppo``), with the
latent sizes the ``shppo`` options name.

Installs: the options' ablations on the model (``zero_latent_inputs``: the LatentNet sees
zeros; ``zero_latents``: the actor sees zero latents). Hands plugins
(``HostObjects.latent_net``) the model's LatentNet. Every iteration the auxiliary losses
train on the collected batch with the actor's own input (its observation entries
concatenated) as ``obs`` and, for the recurrent model, the memory h^{t-1} the LatentNet
read while acting as ``extra["hidden_state"]``; the host's discount is
``HostSpec.extra["gamma"]`` (the experiment's ``gamma``). Afterwards the LatentNet's
gradients are cleared, since BenchMARL's optimiser holds those parameters too and must
not step on them.
"""

from __future__ import annotations

import torch

import hetplug
from hetplug.shppo import SHPPOConfig
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
        active = "shppo" in config.plugins
        self.options = config.options.get("shppo", {}) if active else None
        self.settings = SHPPOConfig(**self.options) if active else None

    def check_algorithm(self, algorithm: type, on_policy: bool) -> None:
        if self.options is not None and not on_policy:
            raise ValueError(
                f"plugin 'shppo' is not available with off-policy {algorithm.__name__}: "
                "SHPPO trains the actor of PPO-style algorithms (happo, mappo, ippo)"
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

    def install(self, exp, run: GroupRun) -> None:
        if self.settings is None:
            return
        model = shppo_model(exp, run.group)  # the ablations of section V-E, on the acting model
        model.latent_net.zero_inputs = self.settings.zero_latent_inputs
        model.actor.zero_latents = self.settings.zero_latents

    def host_objects(self, exp, group: str) -> dict:
        found = shppo_models(exp, group)
        return {"latent_net": found[0].latent_net} if len(found) == 1 else {}

    def collected(self, exp, batch, run: GroupRun) -> None:
        found = shppo_models(exp, run.group)
        if len(found) == 1:  # the actor's own input (and memory), for the latent losses
            model = found[0]
            x = torch.cat([batch.get(k) for k in model.feature_keys], dim=-1)
            extra = dict(run.collected.extra)
            if model.rnn:
                extra["hidden_state"] = batch.get(model.memory_key).detach()
            run.auxiliary_batch = run.collected.replace(obs=x.detach(), extra=extra)

    def train_end(self, exp, run: GroupRun) -> None:
        found = shppo_models(exp, run.group)
        if len(found) == 1:
            for p in found[0].latent_net.parameters():
                p.grad = None  # BenchMARL's optimiser (it holds them too) must not reuse them
