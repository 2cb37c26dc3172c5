"""Building a plugin manager: built-in plugins by name, third-party ones by entry point.

Example:
    >>> import hetplug
    >>> pm = hetplug.get_plugin_manager(["per"], {"per": {"alpha": 0.7}})
    >>> spec = hetplug.HostSpec(n_agents=3, max_steps=1, capacity=100)
    >>> pm.hook.hetplug_configure.call_historic(kwargs={"spec": spec})
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from typing import Any

import pluggy

from hetplug import hookspecs
from hetplug._checks import config_from_dict

ENTRY_POINT_GROUP = "hetplug"

# name -> "module:Class"; imported only when selected, so `import hetplug` stays light.
BUILTIN_PLUGINS: dict[str, str] = {
    "per": "hetplug.replay.per:PERPlugin",
    "shep": "hetplug.shep.plugin:SHEPPlugin",
    "lbs": "hetplug.lbs.plugin:LBSPlugin",
    "shppo": "hetplug.shppo.plugin:SHPPOPlugin",
    "hetdps": "hetplug.sharing.plugin:HetDPSPlugin",
}

# Hooks where exactly one plugin may answer; two plugins providing one would silently
# shadow each other, so get_plugin_manager refuses the combination.
_EXCLUSIVE_HOOKS = ("hetplug_replay_add", "hetplug_replay_sample", "hetplug_update_priorities")


def _entry_point_plugins() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_plugins() -> list[str]:
    """Names accepted by :func:`get_plugin_manager`: built-ins, then installed entry points."""
    return sorted(BUILTIN_PLUGINS) + sorted(set(_entry_point_plugins()) - set(BUILTIN_PLUGINS))


def _instantiate(name: str, target: Any, options: Any) -> Any:
    """Turn a plugin class (with optional ``config_class``) into an instance."""
    if isinstance(target, type):
        config_class = getattr(target, "config_class", None)
        if config_class is not None:
            return target(config_from_dict(config_class, options, name))
        if options:
            raise ValueError(f"plugin {name!r} takes no options, got {dict(options)!r}")
        return target()
    if options:
        raise ValueError(f"plugin {name!r} is an instance and takes no options, got {dict(options)!r}")
    return target


def get_plugin_manager(
    plugins: Iterable[str | object] = (),
    options: Mapping[str, Any] | None = None,
) -> pluggy.PluginManager:
    """A fresh ``PluginManager("hetplug")`` with the selected plugins registered.

    Args:
        plugins: names of built-in plugins (``"per"``, ``"shep"``), names of plugins
            installed under the entry-point group ``hetplug``, or plugin objects.
        options: per-plugin settings, ``{name: {field: value}}``, validated by the
            plugin's config dataclass.

    Raises:
        ValueError: unknown plugin name (the message lists the known ones), options for a
            plugin that is not selected, unknown or invalid options, or two plugins that
            both answer an exclusive hook (two prioritisers).
    """
    if isinstance(plugins, str):
        plugins = [plugins]
    options = dict(options or {})
    pm = pluggy.PluginManager("hetplug")
    pm.add_hookspecs(hookspecs)
    entry = None
    selected_names = []
    for item in plugins:
        if not isinstance(item, str):
            pm.register(item)
            continue
        if item in selected_names:
            raise ValueError(f"plugin {item!r} is selected twice")
        selected_names.append(item)
        if item in BUILTIN_PLUGINS:
            module_name, _, attr = BUILTIN_PLUGINS[item].partition(":")
            target = getattr(importlib.import_module(module_name), attr)
        else:
            entry = _entry_point_plugins() if entry is None else entry
            if item not in entry:
                raise ValueError(
                    f"unknown hetplug plugin {item!r}; known plugins: {', '.join(available_plugins())}"
                )
            target = entry[item].load()
        pm.register(_instantiate(item, target, options.pop(item, None)), name=item)
    if options:
        raise ValueError(
            f"options given for plugin(s) not selected: {', '.join(sorted(options))}; "
            f"selected: {', '.join(selected_names) or 'none'}"
        )
    for hook_name in _EXCLUSIVE_HOOKS:
        impls = getattr(pm.hook, hook_name).get_hookimpls()
        if len(impls) > 1:
            names = ", ".join(impl.plugin_name for impl in impls)
            raise ValueError(f"plugins {names} all implement {hook_name}; select only one of them")
    pm.check_pending()
    return pm


def plugin_state(pm: pluggy.PluginManager) -> dict[str, Any]:
    """``{plugin name: state}`` for every registered plugin that has ``state_dict()``."""
    return {
        name: plugin.state_dict()
        for name, plugin in pm.list_name_plugin()
        if plugin is not None and hasattr(plugin, "state_dict")
    }


def load_plugin_state(pm: pluggy.PluginManager, state: Mapping[str, Any]) -> None:
    """Restore what :func:`plugin_state` returned into the same selection of plugins."""
    plugins = dict(pm.list_name_plugin())
    missing = sorted(set(state) - set(plugins))
    if missing:
        raise ValueError(f"saved state for plugin(s) not registered: {', '.join(missing)}")
    for name, value in state.items():
        plugins[name].load_state_dict(value)
