"""Building a plugin manager: every plugin, hetplug's own included, by entry point.

Example:
    >>> import hetplug
    >>> pm = hetplug.get_plugin_manager(["per"], {"per": {"alpha": 0.7}})
    >>> spec = hetplug.HostSpec(n_agents=3, max_steps=1, capacity=100)
    >>> pm.hook.hetplug_configure.call_historic(kwargs={"spec": spec})
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from typing import Any

import pluggy

from hetplug import hookspecs
from hetplug._checks import check_mapping, config_from_dict
from hetplug.config import did_you_mean

ENTRY_POINT_GROUP = "hetplug"

#: the plugins hetplug itself ships; they are registered, like any third-party plugin,
#: under the entry-point group ``hetplug`` in pyproject.toml
BUILTIN_NAMES = ("hetdps", "lbs", "per", "shep", "shppo")

# Hooks where exactly one plugin may answer; two plugins providing one would silently
# shadow each other, so get_plugin_manager refuses the combination.
_EXCLUSIVE_HOOKS = ("hetplug_replay_add", "hetplug_replay_sample", "hetplug_update_priorities")


class _HistoricHookCaller(pluggy.HookCaller):
    """A historic hook (``hetplug_configure``) that, called directly, says how to call it
    (pluggy's own refusal is a bare assertion)."""

    __slots__ = ()

    def __call__(self, **kwargs: Any) -> Any:
        raise TypeError(
            f"{self.name} is a historic hook: call pm.hook.{self.name}.call_historic(kwargs={{'spec': spec}}) "
            f"instead of pm.hook.{self.name}(...), so that plugins registered later get the same call"
        )


def _entry_point_plugins() -> dict[str, Any]:
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if not set(BUILTIN_NAMES) <= set(found):
        missing = ", ".join(sorted(set(BUILTIN_NAMES) - set(found)))
        raise RuntimeError(
            f"hetplug's built-in plugins ({missing}) are not registered under the entry-point group "
            f"{ENTRY_POINT_GROUP!r}: install hetplug (pip install -e . from a clone) instead of "
            "putting its source on sys.path"
        )
    return found


def available_plugins() -> list[str]:
    """Names accepted by :func:`get_plugin_manager`: every plugin installed under the
    entry-point group ``hetplug`` (hetplug's own and third-party ones alike)."""
    return sorted(_entry_point_plugins())


def _instantiate(where: str, target: Any, options: Any) -> Any:
    """Turn a plugin class (with optional ``config_class``) into an instance."""
    if isinstance(target, type):
        config_class = getattr(target, "config_class", None)
        if config_class is not None:
            return target(config_from_dict(config_class, options, where))
        if options:
            raise ValueError(f"plugin {where} takes no options, got {where}={dict(options)!r}")
        return target()
    if options:
        raise ValueError(f"plugin {where} is an instance and takes no options, got {where}={dict(options)!r}")
    return target


def get_plugin_manager(
    plugins: Iterable[str | object] = (),
    options: Mapping[str, Any] | None = None,
    *,
    _where: str = "",
) -> pluggy.PluginManager:
    """A fresh ``PluginManager("hetplug")`` with the selected plugins registered.

    Args:
        plugins: names of plugins installed under the entry-point group ``hetplug``
            (hetplug's own: ``"per"``, ``"shep"``, ``"lbs"``, ``"shppo"``, ``"hetdps"``),
            or plugin objects.
        options: per-plugin settings, ``{name: {field: value}}``, validated by the
            plugin's config dataclass.

    Raises:
        ValueError: unknown plugin name (the message lists the known ones), options for a
            plugin that is not selected, unknown or invalid options, or two plugins that
            both answer an exclusive hook (two prioritisers).
    """
    prefix = f"{_where}." if _where else ""
    if isinstance(plugins, str):
        plugins = [plugins]
    if isinstance(plugins, Mapping) or not isinstance(plugins, Iterable):
        raise TypeError(f"{prefix}plugins must be a list of plugin names, got {prefix}plugins={plugins!r}")
    plugins = list(plugins)
    for item in plugins:
        if item is None or isinstance(item, (bool, int, float, bytes, list, tuple, dict)):
            raise TypeError(
                f"{prefix}plugins must hold plugin names (str) or plugin objects, got {prefix}plugins={plugins!r}"
            )
    options = dict(check_mapping(f"{prefix}options", options or {}, "a mapping {plugin: {option: value}}"))
    pm = pluggy.PluginManager("hetplug")
    pm.add_hookspecs(hookspecs)
    for name in dir(pm.hook):
        caller = getattr(pm.hook, name)
        if isinstance(caller, pluggy.HookCaller) and caller.is_historic():
            caller.__class__ = _HistoricHookCaller
    entry = None
    selected_names = []
    for item in plugins:
        if not isinstance(item, str):
            pm.register(item)
            continue
        if item in selected_names:
            raise ValueError(f"plugin {item!r} is selected twice in {prefix}plugins")
        selected_names.append(item)
        entry = _entry_point_plugins() if entry is None else entry
        if item not in entry:
            known = sorted(entry)
            raise ValueError(
                f"unknown hetplug plugin {item!r} in {prefix}plugins{did_you_mean(item, known)}; "
                f"known plugins: {', '.join(known)}"
            )
        target = entry[item].load()
        pm.register(_instantiate(prefix + item, target, options.pop(item, None)), name=item)
    if options:
        raise ValueError(
            f"options given for plugin(s) not selected: {', '.join(prefix + k for k in sorted(options))}; "
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


def check_plugin_state(pm: pluggy.PluginManager, state: Any) -> None:
    """Validate what :func:`plugin_state` returned for ``pm`` without changing anything: an
    entry for every registered plugin with a state and none for another, each checked by its
    plugin's ``check_state`` (hetplug's own plugins have one). Hosts that restore several
    plugin managers (one per agent group) check them all before loading any."""
    check_mapping("state", state, "a mapping {plugin name: state} (from hetplug.plugin_state)")
    plugins = {name: p for name, p in pm.list_name_plugin() if p is not None}
    missing = sorted(set(state) - set(plugins))
    if missing:
        raise ValueError(f"saved state for plugin(s) not registered: {', '.join(missing)}")
    absent = sorted(n for n, p in plugins.items() if hasattr(p, "load_state_dict") and n not in state)
    if absent:
        raise ValueError(
            f"state must hold an entry for every registered plugin with a state, got none for "
            f"{', '.join(absent)} (saved with another selection of plugins?)"
        )
    for name, value in state.items():
        check = getattr(plugins[name], "check_state", None)
        if check is not None:
            check(value)


def load_plugin_state(pm: pluggy.PluginManager, state: Mapping[str, Any]) -> None:
    """Restore what :func:`plugin_state` returned into the same selection of plugins.

    Atomic: every plugin's state is validated first (:func:`check_plugin_state`), then each
    is loaded; should a plugin without ``check_state`` refuse, the plugins loaded before it
    are put back. On any error every plugin is as before.
    """
    check_plugin_state(pm, state)
    plugins = {name: p for name, p in pm.list_name_plugin() if p is not None}
    loaded: list[tuple[str, Any]] = []
    try:
        for name, value in state.items():
            backup = plugins[name].state_dict()
            plugins[name].load_state_dict(value)
            loaded.append((name, backup))
    except Exception:
        for name, backup in reversed(loaded):
            plugins[name].load_state_dict(backup)
        raise
