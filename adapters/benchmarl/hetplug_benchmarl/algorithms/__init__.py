"""hetplug's BenchMARL algorithms, registered in ``benchmarl.algorithms.algorithm_config_registry``
when ``hetplug_benchmarl`` is imported: ``happo`` (:class:`Happo`, :class:`HappoConfig`)."""

from __future__ import annotations

from hetplug_benchmarl.algorithms.happo import Happo, HappoConfig, HappoLoss, register

register()

__all__ = ["Happo", "HappoConfig", "HappoLoss"]
