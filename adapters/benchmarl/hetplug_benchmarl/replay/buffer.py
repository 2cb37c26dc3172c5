"""BenchMARL's group buffer with hetplug's writer and sampler.

A ``TensorDictReplayBuffer`` whose :class:`~hetplug_benchmarl.replay.writer.TrajectoryWriter`
places trajectories at hetplug's slots and whose
:class:`~hetplug_benchmarl.replay.sampler.TrajectorySampler` draws them. Two things are
BenchMARL-specific and live here:

* TD errors are read wherever the group's loss wrote them (``(group, "td_error")`` for
  per-agent losses, ``"td_error"`` for QMIX/VDN's mixer loss), as ``|TD|`` (the square
  root of what DQN and DDPG write), averaged over agents;
* on-policy algorithms (MAPPO, IPPO) prioritise a rollout once, when it is stored, by the
  ``|advantage|`` BenchMARL's ``process_batch`` computed.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.data import TensorDictReplayBuffer


class HetplugReplayBuffer(TensorDictReplayBuffer):
    """Args (besides ``TensorDictReplayBuffer``'s):
    td_keys: where the loss writes TD errors, tried in order.
    td_squared: the loss writes ``(Q - y)^2`` rather than ``|Q - y|``.
    advantage_key: on-policy: the key of the advantage the priorities come from.
    """

    def __init__(self, *, td_keys: tuple, td_squared: bool, advantage_key=None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._td_keys = td_keys
        self._td_squared = td_squared
        self._advantage_key = advantage_key

    def extend(self, data: TensorDictBase, *, update_priority: bool | None = None) -> torch.Tensor:
        if self._transform is not None and len(self._transform):
            data = self._transform.inv(data)
            self._writer.map_copies(self._transform.inv)
        copies = self._writer.staged_copies
        index = self._extend(data)  # the writer places originals, then Group-HER copies
        if self._advantage_key is not None:  # on-policy: priorities from |advantage|
            adv = torch.cat(
                [d.get(self._advantage_key).detach().reshape(d.shape[0], -1) for d in (data, *copies)]
            )
            self._sampler.update_priority(index, adv.abs().mean(-1))
        return index

    def update_tensordict_priority(self, data: TensorDictBase) -> None:
        if self._advantage_key is not None:
            return  # on-policy: set once per rollout, in extend
        value = None
        for key in self._td_keys:
            value = data.get(key, None)
            if value is not None:
                break
        if value is None:
            raise KeyError(f"hetplug: the loss wrote no TD error under any of {self._td_keys}")
        td = value.detach().reshape(data.shape[0], -1).abs()
        if self._td_squared:
            td = td.sqrt()
        self._sampler.update_priority(data.get("index"), td.mean(-1))
