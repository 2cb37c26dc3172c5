"""Where SHEP's positions are in a BenchMARL batch (hetplug's ``positions`` / ``opponents``).

VMAS observations start with the agent's own position (``agent.state.pos``) in every
scenario BenchMARL ships with a spatial layout (navigation, balance, sampling, ...), so the
default for the ``shep`` plugin is ``observation[..., 0:2]``. Other tasks name their own
slice, or a per-agent entry the environment writes (e.g. ``key: [info, pos]``). Opponents
are another agent group of the same task (``opponents: {group: adversary, slice: [0, 2]}``).
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.data import Composite

from hetplug.config import PositionSource

#: the ``shep`` plugin's default in BenchMARL (VMAS observations start with the position)
VMAS_POSITIONS = PositionSource(key="obs", slice=(0, 2))


def entry(source: PositionSource, group: str) -> tuple[str, ...]:
    """The batch key ``(group, ...)`` that holds ``source`` (``obs`` is the observation)."""
    key = source.key if isinstance(source.key, tuple) else (source.key,)
    return (group, "observation") if key == ("obs",) else (group, *key)


def read_positions(batch: TensorDictBase, group: str, source: PositionSource) -> torch.Tensor:
    """``[B, T, N, D]`` float positions of ``group``'s agents."""
    start, stop = source.slice
    return batch.get(entry(source, group))[..., start:stop].float()


def check_source(spec, group: str, source: PositionSource, field: str) -> None:
    """Fail before training when ``source``'s entry or slice does not exist in ``spec`` (the
    experiment's observation spec)."""
    if source.extractor is not None:  # an environment-object reader: BenchMARL hands over batches
        raise ValueError(
            f"{field}.extractor={source.extractor!r} is EPyMARL's (it reads the environment object); "
            f"in BenchMARL give the key and slice of a batch entry"
        )
    key = entry(source, group)
    try:
        leaf = spec[key]
    except KeyError:
        raise ValueError(
            f"{field}.key={list(key[1:])!r}: group {group!r} has no such entry; "
            f"it has {sorted(str(k) for k in spec[group].keys())}"
        ) from None
    width = leaf.shape[-1]
    if source.slice[1] > width:
        raise ValueError(
            f"{field}.slice={list(source.slice)!r} is out of range: {'/'.join(key)} has {width} features"
        )


def batch_spec(exp) -> Composite:
    """Everything the environment writes into the collected batch (the policy's inputs,
    ``info``, and entries such as positions or alive masks that no model reads)."""
    return exp.test_env.full_observation_spec


def check_opponents(exp, source: PositionSource) -> None:
    """The opponents' group exists and holds the configured entry and slice. It is an agent
    group, or a group of entries the environment writes for a team no BenchMARL group
    plays (e.g. the fixed blue team of ``magent/battle``)."""
    spec = batch_spec(exp)
    if source.group is None or not (
        source.group in exp.group_map or isinstance(spec.get(source.group, None), Composite)
    ):
        entries = sorted(k for k in spec.keys() if isinstance(spec[k], Composite) and k not in exp.group_map)
        raise ValueError(
            f"opponents.group={source.group!r} is not an agent group; groups: {sorted(exp.group_map)}"
            + (f"; other teams in the batch: {entries}" if entries else "")
        )
    check_source(spec, source.group, source, "opponents")
