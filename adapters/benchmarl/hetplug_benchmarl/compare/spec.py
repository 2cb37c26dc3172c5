"""The grid of ``hetplug compare``: variants x seeds, each run described by plain data.

A :class:`RunSpec` holds everything one run needs (task, algorithm, plugins, options,
model, seed, experiment sizes) as strings, numbers and dicts, so it pickles to a Ray
worker and prints in an error. :func:`make_grid` checks every name and option shape and
raises :class:`SpecError` (one line, with the closest valid name) before anything runs.

Example:
    >>> grid = make_grid("vmas/navigation", "iql", ["none", "shep"], seeds=2,
    ...                  sets=["shep.group_her=true"], settings=Settings(frames=6000))
    >>> [r.label for r in grid.runs()]
    ['iql seed 0', 'iql+shep seed 0', 'iql seed 1', 'iql+shep seed 1']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

#: the variant token for the unmodified algorithm
NONE = "none"
#: model names of ``--model`` (``auto``: the one the plugins need, see :func:`pick_models`)
MODELS = ("mlp", "slot", "shppo")
#: joins a variant's plugins and the model it names (``happo@shppo``: happo on the SHPPO model)
MODEL_SEP = "@"


class SpecError(ValueError):
    """A bad name or option, found before any run starts. The message is one line."""


def closest(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or ``""`` when none is close."""
    from hetplug.config import did_you_mean

    return did_you_mean(name, list(choices))


def unknown(kind: str, name: str, choices: Sequence[str]) -> SpecError:
    """``unknown task 'vmas/navgation' (did you mean 'vmas/navigation'?); choose one of: ...``"""
    return SpecError(f"unknown {kind} {name!r}{closest(name, choices)}; choose one of: {', '.join(choices)}")


def algorithms() -> dict[str, Any]:
    """BenchMARL algorithm configs by command-line name (off-policy, then on-policy)."""
    from hetplug_benchmarl.demo import ALGORITHMS, ON_POLICY

    return {**ALGORITHMS, **ON_POLICY}


def is_on_policy(algorithm: str) -> bool:
    from hetplug_benchmarl.demo import ON_POLICY

    return algorithm in ON_POLICY


@dataclass(frozen=True)
class Settings:
    """Experiment sizes shared by every run of a grid (the demo's defaults)."""

    frames: int = 60_000
    """environment frames per run (BenchMARL's ``max_n_frames``)"""
    frames_per_batch: int = 1_000
    """frames collected per iteration"""
    envs: int = 20
    """vectorised environments"""
    updates: int = 40
    """optimiser steps per iteration (on-policy: minibatches of 200 per iteration, as the demo)"""
    memory: int = 100_000
    """off-policy replay memory, in frames"""
    eval_episodes: int = 10
    """evaluation episodes per evaluation (their returns are the json's ``return``)"""
    eval_every: int = 1
    """evaluate every this many iterations"""
    device: str = "cpu"
    """``cpu`` or ``cuda`` (sampling, training and buffers)"""

    def __post_init__(self) -> None:
        for name in (
            "frames",
            "frames_per_batch",
            "envs",
            "updates",
            "memory",
            "eval_episodes",
            "eval_every",
        ):
            if getattr(self, name) < 1:
                raise SpecError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.frames_per_batch % self.envs:
            raise SpecError(
                f"--frames-per-batch ({self.frames_per_batch}) must be a multiple of --envs ({self.envs})"
            )
        if self.frames < self.frames_per_batch * self.eval_every:
            raise SpecError(
                f"--frames ({self.frames}) must cover one evaluation: at least --frames-per-batch x "
                f"--eval-every ({self.frames_per_batch * self.eval_every})"
            )
        if self.device not in ("cpu", "cuda"):
            raise SpecError(f"--device must be cpu or cuda, got {self.device!r}")

    @property
    def iterations(self) -> int:
        return max(1, self.frames // self.frames_per_batch)


@dataclass(frozen=True)
class Variant:
    """One arm of the comparison: the algorithm with these plugins (none: unmodified)."""

    algorithm: str
    plugins: tuple[str, ...] = ()
    model_tag: str | None = None
    """the model, when the variant's name must say it (per-variant models, see :func:`pick_models`)"""

    @property
    def name(self) -> str:
        """The algorithm name in the run's BenchMARL json: ``iql``, ``iql+shep``, ``happo@shppo``."""
        name = "+".join((self.algorithm, *self.plugins))
        return f"{name}{MODEL_SEP}{self.model_tag}" if self.model_tag else name


@dataclass(frozen=True)
class RunSpec:
    """One run: a BenchMARL experiment of ``variant`` on ``task`` with ``seed``."""

    task: str
    variant: Variant
    seed: int
    model: str
    settings: Settings
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """options of the variant's own plugins, ``{plugin: {option: value}}``"""
    experiment: Mapping[str, Any] = field(default_factory=dict)
    """BenchMARL ``ExperimentConfig`` fields set with ``--set experiment.FIELD=VALUE`` (every variant)"""

    @property
    def label(self) -> str:
        return f"{self.variant.name} seed {self.seed}"

    def config(self) -> dict[str, Any]:
        """Everything that decides the run's result except the seed and the device (json-able)."""
        settings = {k: v for k, v in asdict(self.settings).items() if k != "device"}
        config = {"task": self.task, "variant": self.variant.name, "model": self.model,
                  "options": _plain(self.options), "settings": settings}  # fmt: skip
        if self.experiment:  # absent otherwise, so grids from before this key still resume
            config["experiment"] = _plain(self.experiment)
        return config


@dataclass(frozen=True)
class Grid:
    """Variants x seeds on one task."""

    task: str
    variants: tuple[Variant, ...]
    seeds: tuple[int, ...]
    models: tuple[str, ...]
    """the policy model of each variant (in the order of ``variants``)"""
    settings: Settings
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """``{plugin: {option: value}}``; each variant gets the entries of its own plugins"""

    @property
    def model(self) -> str:
        """The model of every variant, or ``"mlp/shppo"`` when they differ."""
        return "/".join(dict.fromkeys(self.models))

    def model_of(self, variant: Variant) -> str:
        return self.models[self.variants.index(variant)]

    def runs(self) -> list[RunSpec]:
        """Seed-major, so an interrupted grid has the variants equally far along."""
        return [self.run(v, s) for s in self.seeds for v in self.variants]

    def run(self, variant: Variant, seed: int) -> RunSpec:
        options = {p: dict(self.options[p]) for p in variant.plugins if p in self.options}
        if variant.plugins:  # the configuration's top-level keys (where positions are, ...)
            options.update({k: self.options[k] for k in HOST_KEYS if k in self.options})
        for plugin, defaults in default_options(variant.plugins, self.settings).items():
            options[plugin] = {**defaults, **options.get(plugin, {})}
        experiment = dict(self.options.get(EXPERIMENT, {}))
        return RunSpec(self.task, variant, seed, self.model_of(variant), self.settings, options, experiment)


def default_options(plugins: Sequence[str], settings: Settings) -> dict[str, dict[str, Any]]:
    """Option defaults that depend on the run length (the demo's): HetDPS regroups about six
    times per run."""
    return {"hetdps": {"interval": max(1, settings.iterations // 6)}} if "hetdps" in plugins else {}


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` as a string; read it as a float, as Hydra (OmegaConf) does."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"), list("-+0123456789.")
)


#: top-level keys of hetplug's configuration that ``--set`` also accepts (``positions.key=position``)
HOST_KEYS = ("positions", "opponents", "replay_window")
#: ``--set experiment.FIELD=VALUE``: a field of BenchMARL's ``ExperimentConfig`` for every variant
EXPERIMENT = "experiment"
#: ExperimentConfig fields that the grid's own flags set (``--frames`` ...) or that would break its runs
EXPERIMENT_OWNED = {
    "max_n_frames": "--frames", "max_n_iters": "--frames", "on_policy_collected_frames_per_batch": "--frames-per-batch",
    "off_policy_collected_frames_per_batch": "--frames-per-batch", "on_policy_n_envs_per_worker": "--envs",
    "off_policy_n_envs_per_worker": "--envs", "off_policy_n_optimizer_steps": "--updates",
    "off_policy_memory_size": "--memory", "evaluation_episodes": "--eval-episodes",
    "evaluation_interval": "--eval-every", "sampling_device": "--device", "train_device": "--device",
    "buffer_device": "--device", "save_folder": "--out", "loggers": "--out", "create_json": "--out",
    "evaluation": "--eval-every", "render": "--out", "restore_file": "--out",
}  # fmt: skip


def check_experiment(fields: Mapping[str, Any]) -> None:
    """``--set experiment.*``: each a field of BenchMARL's ``ExperimentConfig`` that the grid does
    not set itself, with a value of the field's type (an int is accepted for a float).

    Raises:
        SpecError: one line, with the closest field name.
    """
    from dataclasses import fields as dataclass_fields

    from benchmarl.experiment import ExperimentConfig

    defaults = ExperimentConfig.get_from_yaml()
    known = sorted(f.name for f in dataclass_fields(ExperimentConfig))
    for name, value in fields.items():
        if name not in known:
            raise SpecError(
                f"--set experiment.{name}: not a field of BenchMARL's ExperimentConfig{closest(name, known)}"
            )
        if name in EXPERIMENT_OWNED:
            raise SpecError(f"--set experiment.{name}: compare sets it from {EXPERIMENT_OWNED[name]}")
        default = getattr(defaults, name)
        expected = (int, float) if isinstance(default, float) else type(default)
        if default is not None and (
            isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, expected)
        ):
            raise SpecError(
                f"--set experiment.{name}={value!r}: expected a {type(default).__name__} like the default {default!r}"
            )


def parse_sets(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``["shep.group_her=false", "hetdps.cvae.epochs=2"]`` -> ``{"shep": {"group_her": False},
    "hetdps": {"cvae": {"epochs": 2}}}``. Values are read as YAML (``[4, 4]``, ``1e-3``, ``null``).
    ``positions.*`` and ``opponents.*`` set the configuration's top-level keys.
    """
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        key, eq, text = item.partition("=")
        path = key.strip().split(".")
        if not eq or len(path) < 2 or not all(path):
            raise SpecError(f"--set {item!r}: expected PLUGIN.OPTION=VALUE, e.g. shep.group_her=false")
        try:
            value = yaml.load(text, Loader=_YamlLoader)
        except yaml.YAMLError as err:
            raise SpecError(f"--set {item!r}: the value is not YAML ({str(err).splitlines()[0]})") from None
        node = options.setdefault(path[0], {})
        for part in path[1:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SpecError(f"--set {item!r}: {part} is already set to a value")
        node[path[-1]] = value
    return options


def pick_model(model: str, plugins: Iterable[str]) -> str:
    """The model of variants with ``plugins``: the one a plugin needs (the demo's rule), or the
    requested one if it agrees."""
    from hetplug_benchmarl.demo import model_for

    plugins = set(plugins)
    if {"hetdps", "shppo"} <= plugins:
        raise SpecError("--plugins: hetdps and shppo each need their own model; compare them in two grids")
    needed = model_for(sorted(plugins))
    if model == "auto":
        return needed
    if model not in MODELS:
        raise unknown("model", model, ["auto", *MODELS])
    if needed != "mlp" and model != needed:
        plugin = "hetdps" if needed == "slot" else "shppo"
        raise SpecError(f"--model {model}: plugin {plugin} needs the {needed} model (leave --model auto)")
    return model


def pick_models(models: Sequence[str], variants: Sequence[Variant]) -> tuple[list[str], list[Variant]]:
    """Each variant's model, and the variants named so that they stay distinct.

    - One model (``--model auto``, the default, or ``--model mlp``): every variant gets it,
      ``auto`` being the one a plugin of any variant needs, so only the plugins differ (the
      demo's rule). Names are unchanged: ``iql``, ``iql+hetdps``.
    - One model per variant (``--plugins none shppo --model mlp shppo``): each variant gets
      its own (``auto``: the one its own plugins need). A variant whose model is not the one its
      plugins imply names it: ``happo@shppo`` is the unmodified algorithm on the SHPPO model,
      while ``happo`` (MLP) and ``happo+shppo`` (SHPPO model) need no tag.

    Raises:
        SpecError: a count that matches neither, an unknown model, or a model a plugin cannot use.
    """
    from hetplug_benchmarl.demo import model_for

    if len(models) == 1:
        used = sorted({p for v in variants for p in v.plugins})
        picked, named = [pick_model(models[0], used)] * len(variants), list(variants)
    elif len(models) == len(variants):
        picked = [pick_model(m, v.plugins) for m, v in zip(models, variants, strict=True)]
        named = [
            v if m == model_for(sorted(v.plugins)) else Variant(v.algorithm, v.plugins, m)
            for m, v in zip(picked, variants, strict=True)
        ]
    else:
        raise SpecError(
            f"--model: give one model for all variants or one per variant ({len(variants)}), got {len(models)}"
        )
    names = [v.name for v in named]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        token = "+".join(named[names.index(twice)].plugins) or NONE
        given = f"{token!r} (model {picked[names.index(twice)]})" if len(models) > 1 else repr(token)
        raise SpecError(f"--plugins: variant {given} is given twice")
    return picked, named


def make_grid(
    task: str,
    algorithm: str,
    variants: Sequence[str],
    *,
    seeds: int,
    sets: Iterable[str] = (),
    model: str | Sequence[str] = "auto",
    settings: Settings | None = None,
) -> Grid:
    """Check names and option shapes and build the grid (no run is built or started).

    Args:
        task: ``family/task`` (see :func:`hetplug_benchmarl.compare.tasks.task_names`).
        algorithm: a BenchMARL algorithm name, e.g. ``iql``.
        variants: one token per variant: ``none`` or plugin names joined by ``+``.
        seeds: runs per variant (seeds 0..seeds-1).
        sets: ``PLUGIN.OPTION=VALUE`` strings (see :func:`parse_sets`).
        model: ``auto``, ``mlp``, ``slot`` or ``shppo``, for every variant; or a list of them,
            one per variant (see :func:`pick_models`).
        settings: experiment sizes (default :class:`Settings`).

    Raises:
        SpecError: with a one-line message naming the bad value.
    """
    import hetplug
    from hetplug_benchmarl.compare.tasks import feature_dims, task_names

    names = task_names()
    if task not in names:
        raise unknown("task", task, names)
    algos = algorithms()
    if algorithm not in algos:
        raise unknown("algorithm", algorithm, sorted(algos))
    if seeds < 1:
        raise SpecError(f"--seeds must be >= 1, got {seeds}")
    if not variants:
        raise SpecError("--plugins: give at least one variant (none = the unmodified algorithm)")
    known = hetplug.available_plugins()
    parsed: list[Variant] = []
    for token in variants:
        plugins = () if token == NONE else tuple(token.split("+"))
        for plugin in plugins:
            if plugin not in known:
                raise unknown("plugin", plugin, [NONE, *known])
        if len(set(plugins)) != len(plugins):
            raise SpecError(f"--plugins {token}: a plugin appears twice")
        variant = Variant(algorithm, plugins)
        _check_supported(variant)
        parsed.append(variant)
    options = parse_sets(sets)
    used = sorted({p for v in parsed for p in v.plugins})
    check_experiment(options.get(EXPERIMENT, {}))
    for plugin in options:
        if plugin in (*HOST_KEYS, EXPERIMENT):
            continue  # positions, opponents, replay_window: every variant with plugins gets them
        if plugin not in used:
            where = f"; --set applies to the variants' plugins: {', '.join(used)}" if used else ""
            raise SpecError(
                f"--set {plugin}.*: plugin {plugin!r} is in no variant{closest(plugin, used)}{where}"
            )
    models, parsed = pick_models([model] if isinstance(model, str) else list(model), parsed)
    if feature_dims(task) > 1 and set(models) != {"mlp"}:
        other = next(m for m in models if m != "mlp")
        raise SpecError(
            f"--model {other}: {task}'s observations are not flat vectors (the last {feature_dims(task)} dims "
            f"are features); only mlp flattens them"
        )
    return Grid(
        task=task,
        variants=tuple(parsed),
        seeds=tuple(range(seeds)),
        models=tuple(models),
        settings=settings or Settings(),
        options=options,
    )


def _check_supported(variant: Variant) -> None:
    """The adapter's own check of what it can wire (here, not inside a worker)."""
    from hetplug_benchmarl.wiring import check_algorithm

    config = algorithms()[variant.algorithm]
    try:
        check_algorithm(list(variant.plugins), config.associated_class(), is_on_policy(variant.algorithm))
    except (ValueError, TypeError) as err:
        raise SpecError(f"--plugins {'+'.join(variant.plugins) or NONE}: {err}") from None


def _plain(value: Any) -> Any:
    """Mappings and tuples as json gives them back (dicts and lists), for comparisons."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
