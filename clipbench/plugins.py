"""The plugin manager: built-in plugins and entry points, loaded through the same path.

No global state: :func:`get_plugin_manager` builds a fresh manager each time,
so tests build their own with fake plugins.  Set ``CLIPBENCH_LOAD_PLUGINS`` to a
comma-separated list of entry-point names to load only those (empty: none), for
reproducible runs that must not pick up whatever happens to be installed.
"""

from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass, field
from typing import Callable, Iterable

import pluggy

from clipbench import hookspecs
from clipbench.errors import ClipbenchError
from clipbench.results import SAFE_MODEL, SAFE_NAME

ENTRY_POINT_GROUP = "clipbench"

DEFAULT_PLUGINS = (
    "clipbench.models_plugin",
    "clipbench.suites.default",
    "clipbench.suites.real",
    "clipbench.methods.zeroshot",
    "clipbench.methods.linear_probe",
    "clipbench.methods.full_ft",
    "clipbench.methods.aclip",
    "clipbench.methods.saft",
    "clipbench.methods.orthcr",
    "clipbench.methods.knn_adapter",
    "clipbench.methods.bitfit",
    "clipbench.methods.lora",
    "clipbench.methods.clip_adapter",
    "clipbench.methods.coop",
    "clipbench.methods.cocoop",
    "clipbench.methods.tip_adapter",
    "clipbench.methods.flyp",
    "clipbench.methods.lp_ft",
    "clipbench.methods.wise_ft",
    "clipbench.sweep",
    "clipbench.sweep_slurm",
    "clipbench.sweep_ray",
)


def get_plugin_manager(load_entrypoints: bool = True, extra: Iterable[object] = ()) -> pluggy.PluginManager:
    """A plugin manager with the built-ins, the installed entry points and ``extra`` plugins."""
    pm = pluggy.PluginManager("clipbench")
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    if load_entrypoints:
        allowed = os.environ.get("CLIPBENCH_LOAD_PLUGINS")
        if allowed is None:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        else:
            from importlib import metadata

            # the same view of installed distributions that pluggy's loader takes
            installed = sorted({ep.name for dist in metadata.distributions() for ep in dist.entry_points
                                if ep.group == ENTRY_POINT_GROUP})
            for wanted in filter(None, (s.strip() for s in allowed.split(","))):
                if wanted not in installed:
                    raise ClipbenchError(f"CLIPBENCH_LOAD_PLUGINS names {wanted!r}, which is not an installed "
                                         f"clipbench plugin (installed: {', '.join(installed) or 'none'}).")
                pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=wanted)
    for plugin in extra:
        pm.register(plugin)
    pm.check_pending()
    return pm


def plugin_name(pm: pluggy.PluginManager, plugin: object) -> str:
    for name, p in pm.list_name_plugin():
        if p is plugin:
            dist = dict((id(p), d.project_name) for p, d in pm.list_plugin_distinfo()).get(id(plugin))
            if dist:
                return dist
            return "built-in" if name in DEFAULT_PLUGINS else name
    return repr(plugin)


class FrozenDict(dict):
    """A dict that refuses changes: what reporting hooks receive (``json.dumps`` still works on it)."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("clipbench hands hooks read-only records; copy.deepcopy(record) gives an editable one")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __copy__(self):
        return dict(self)

    def __deepcopy__(self, memo):
        return thaw(self)

    def __reduce__(self):  # pickles (to a worker process, a queue) as the plain record
        return (dict, (thaw(self),))


def thaw(record):
    """A plain, editable copy of a frozen record: dicts and lists again."""
    if isinstance(record, dict):
        return {k: thaw(v) for k, v in record.items()}
    if isinstance(record, (list, tuple)):
        return [thaw(v) for v in record]
    return record


def frozen(record):
    """A read-only deep view of a result record: dicts frozen, lists as tuples."""
    if isinstance(record, dict):
        return FrozenDict({k: frozen(v) for k, v in record.items()})
    if isinstance(record, (list, tuple)):
        return tuple(frozen(v) for v in record)
    return record


@dataclass
class ModelSource:
    """A model a plugin contributes: how to load it, and the pretrained tags it knows (with whether each is
    available offline; None: unknown)."""

    name: str
    loader: Callable
    description: str
    plugin: str
    tags: tuple[str, ...] = ()
    available: bool | None = None


@dataclass
class Registry:
    """Everything the plugins contributed, by name, with who contributed it."""

    methods: dict[str, object] = field(default_factory=dict)
    suites: dict[str, object] = field(default_factory=dict)
    models: dict[str, ModelSource] = field(default_factory=dict)
    executors: dict[str, object] = field(default_factory=dict)
    owners: dict[tuple[str, str], str] = field(default_factory=dict)

    def method(self, name: str):
        return self._lookup("method", self.methods, name)

    def suite(self, name: str):
        return self._lookup("suite", self.suites, name)

    def executor(self, name: str):
        return self._lookup("executor", self.executors, name)

    @staticmethod
    def _lookup(kind: str, table: dict, name: str):
        if name in table:
            return table[name]
        close = difflib.get_close_matches(name, list(table), n=1)
        hint = f" Did you mean: {close[0]}?" if close else ""
        raise ClipbenchError(f"Unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(sorted(table))}.")


def collect(pm: pluggy.PluginManager | None = None) -> Registry:
    """Ask every plugin for its methods, suites, model sources and executors."""
    pm = pm or get_plugin_manager()
    reg = Registry()

    def add(kind: str, table: dict, name: str, value, plugin: str) -> None:
        if not isinstance(name, str) or not name:
            raise ClipbenchError(f"Plugin {plugin} registered a {kind} without a name.")
        pattern = SAFE_MODEL if kind == "model" else SAFE_NAME
        if not pattern.fullmatch(name):
            raise ClipbenchError(f"Plugin {plugin} registered the {kind} {name[:60]!r}: names are letters, digits, "
                                 f"'-' and '_'{' (and . +)' if kind == 'model' else ''}, at most 64 characters.")
        if kind == "suite":
            for task in getattr(value, "tasks", {}).values():
                for label in [task.name, *task.shifts, *task.probes]:
                    if not SAFE_NAME.fullmatch(label):
                        raise ClipbenchError(f"Plugin {plugin}'s suite {name!r} names a task, shift or probe "
                                             f"{label[:60]!r}: names are letters, digits, '-' and '_'.")
        if name in table:
            raise ClipbenchError(f"Two plugins register the {kind} {name!r}: "
                                 f"{reg.owners[(kind, name)]} and {plugin}. Uninstall one of them.")
        table[name] = value
        reg.owners[(kind, name)] = plugin

    # Each registration hook is called through pluggy once per implementing plugin, in pluggy's order
    # (tryfirst/trylast apply) and with every wrapper around it, so each plugin gets a ``register`` of its
    # own that knows whose registrations it receives (a clash names both owners).
    for hook, kind, table in (("clipbench_register_methods", "method", reg.methods),
                              ("clipbench_register_suites", "suite", reg.suites),
                              ("clipbench_register_models", "model", reg.models),
                              ("clipbench_register_executors", "executor", reg.executors)):
        plain = [impl for impl in getattr(pm.hook, hook).get_hookimpls()
                 if not (impl.hookwrapper or getattr(impl, "wrapper", False))]
        implementers = [impl.plugin for impl in plain]
        for impl in reversed(plain):  # pluggy calls the last-registered (and tryfirst) implementation first
            who = plugin_name(pm, impl.plugin)
            caller = pm.subset_hook_caller(hook, remove_plugins=[p for p in implementers if p is not impl.plugin])
            if kind == "model":
                def register(name, loader, description="", *, tags=(), available=None, table=table, who=who):
                    add("model", table, name, ModelSource(name, loader, description, who, tuple(tags), available),
                        who)
            else:
                def register(obj, kind=kind, table=table, who=who):
                    add(kind, table, getattr(obj, "name", None), obj, who)
            caller(register=register)
    return reg
