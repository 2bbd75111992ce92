"""Loading one plugin entry point in isolation, and what loading it checks.

:func:`entry_points` lists the ``attnkit`` group's entry points; :func:`load_plugin` imports
one, registers it with the plugin manager and returns its validated component classes, or
raises :class:`Rejected` saying why, with the manager left as if the plugin had never been
registered. The registry (:mod:`attnkit.registry`) decides what to do with the answer.

- :func:`validate_component_class`: a class a plugin returns is a usable component;
- :func:`requirement_problem`: the plugin's ``Requires-Dist: attnkit ...`` is met;
- :func:`keras_names` / :func:`restore_keras_names`: the plugin's import did not replace
  attnkit's own names in Keras' serializable registry;
- :func:`hook_hint`: the hook a misspelled one was meant to be;
- :func:`unregister`: a plugin manager as if a rejected plugin had never been registered.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import re
import sys
from collections.abc import Callable
from typing import Any

import attrs
import pluggy

from attnkit import hookspecs
from attnkit.components import Mask, Pooling, Scorer
from attnkit.errors import PluginConflictError, PluginLoadError, did_you_mean
from attnkit.spec import is_name, unwritable

__all__ = [
    "BUILTIN_MODULES",
    "GROUP",
    "OWN_DISTRIBUTION",
    "EntryPoint",
    "Rejected",
    "entry_points",
    "hook_hint",
    "load_plugin",
    "keras_names",
    "normalize",
    "requirement_problem",
    "restore_keras_names",
    "unregister",
    "validate_component_class",
]

GROUP = "attnkit"
OWN_DISTRIBUTION = "attnkit"
BUILTIN_MODULES = ("attnkit.scorers", "attnkit.masks", "attnkit.poolings")
BASES = {"scorer": Scorer, "mask": Mask, "pooling": Pooling}
#: The methods each kind must implement: the base class's raise NotImplementedError.
REQUIRED = {"scorer": ("score",), "mask": ("allowed",), "pooling": ("pool", "prepare")}
#: Keras' serializable names under attnkit's package, e.g. ``attnkit>AttentionLayer``.
_KERAS_PREFIX = "attnkit>"


def normalize(name: str) -> str:
    """A distribution or entry-point name compared as packaging does (``a_b.c`` is ``a-b-c``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _is_frozen_attrs(cls: type) -> bool:
    return attrs.has(cls) and getattr(cls.__setattr__, "__name__", "") == "_frozen_setattrs"


def validate_component_class(cls: object) -> str | None:
    """Why ``cls`` cannot be registered as a component, or None if it can."""
    if not isinstance(cls, type):
        return f"{cls!r} is not a class"
    kinds = [kind for kind, base in BASES.items() if issubclass(cls, base)]
    if len(kinds) != 1:
        return f"{cls.__qualname__} must subclass exactly one of attnkit.Scorer, Mask, Pooling"
    if not _is_frozen_attrs(cls):
        return f"{cls.__qualname__} must be an attrs frozen class (decorate it with @attrs.frozen)"
    name = cls.__dict__.get("name", getattr(cls, "name", ""))
    if not isinstance(name, str) or not is_name(name):
        return (
            f"{cls.__qualname__}.name must be a lower-case name not ending in a digit "
            f"(got {name!r})"
        )
    fields = {f.name for f in attrs.fields(cls)}
    if cls.shorthand is not None and cls.shorthand not in fields:
        return (
            f"{cls.__qualname__}.shorthand {cls.shorthand!r} is not one of its fields "
            f"{sorted(fields)}"
        )
    for required in REQUIRED[kinds[0]]:
        if getattr(cls, required) is getattr(BASES[kinds[0]], required):
            return f"{cls.__qualname__} must implement {required}()"
    for field in attrs.fields(cls):
        default = field.default
        if default is attrs.NOTHING or isinstance(default, attrs.Factory):
            continue
        problem = unwritable(default)
        if problem:
            return (
                f"{cls.__qualname__}.{field.name} defaults to {default!r}, which a spec cannot "
                f"hold ({problem}); defaults must be int, float, bool, None or a str a spec "
                "can quote"
            )
    return None


def requirement_problem(dist: str) -> str | None:
    """Why a plugin's declared attnkit requirement is not met by this attnkit, or None."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        requires = metadata.distribution(dist).requires or []
        mine = metadata.version(OWN_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    for line in requires:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if normalize(req.name) != OWN_DISTRIBUTION:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        if req.specifier and not req.specifier.contains(mine, prereleases=True):
            return f"it requires {req}; this is attnkit {mine}"
    return None


def keras_names() -> dict[str, object] | None:
    """attnkit's entries in Keras' serializable registry (None before Keras is imported)."""
    # Importing Keras only for this check would make the registry cost a Keras import.
    if "keras" not in sys.modules:
        return None
    import keras

    return {
        key: obj
        for key, obj in keras.saving.get_custom_objects().items()
        if key.startswith(_KERAS_PREFIX)
    }


def restore_keras_names(before: dict[str, object] | None) -> list[str]:
    """Put back attnkit's Keras names a plugin import replaced; returns the ones replaced.

    Keras' ``register_keras_serializable`` silently overwrites an existing name, and a file
    saved with ``attnkit>AttentionLayer`` would then load as the plugin's class. Only names
    that existed before and now map to another object count: a plugin adding a new name under
    ``attnkit>`` collides with nothing.
    """
    if before is None:
        return []
    import keras

    custom = keras.saving.get_custom_objects()
    taken = [key for key, obj in before.items() if custom.get(key) is not obj]
    for key in taken:
        custom[key] = before[key]
    return sorted(taken)


def hook_hint(error: Exception) -> str:
    """For an unknown hook, the hook it was probably meant to be (or the hooks there are)."""
    match = re.match(r"unknown hook '([^']+)'", str(error))
    if not match:
        return ""
    known = [n for n in vars(hookspecs) if n.startswith("attnkit_")]
    close = did_you_mean(match.group(1), known)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f"; attnkit's hooks are: {', '.join(sorted(known))}"


def unregister(pm: pluggy.PluginManager, module, plugin_name: str) -> None:
    """Take ``module`` out of ``pm`` so that it looks as if it had never been registered."""
    # pluggy leaves a plugin registered when its validation fails (pluggy#733).
    if pm.has_plugin(plugin_name) or pm.is_registered(module):
        try:
            pm.unregister(plugin=module if pm.is_registered(module) else None, name=plugin_name)
        except ValueError:  # pragma: no cover - registered under another name
            pass
    # unregister() empties the caller pluggy made for an unknown (misspelled) hook but keeps
    # it; drop it too.
    for hook_name, caller in list(vars(pm.hook).items()):
        if (
            not hook_name.startswith("_")
            and isinstance(caller, pluggy.HookCaller)
            and not caller.has_spec()
            and not caller.get_hookimpls()
        ):
            delattr(pm.hook, hook_name)


@attrs.frozen
class EntryPoint:
    """One entry point to load: its name and value, its distribution, and how to import it."""

    name: str
    value: str
    distribution: str
    version: str
    load: Callable[[], Any]
    group: str = GROUP

    @property
    def own(self) -> bool:
        """Whether attnkit itself declares it (its built-ins)."""
        return normalize(self.distribution) == OWN_DISTRIBUTION

    @property
    def where(self) -> str:
        return (
            f"entry point '{self.name} = {self.value}' (group '{self.group}') "
            f"of distribution {self.distribution} {self.version}"
        )


class Rejected(Exception):
    """An entry point that cannot load: ``problem`` says why, ``error_cls`` is the error strict
    mode raises, ``cause`` the exception behind it."""

    def __init__(self, problem: str, cause=None, error_cls: type[Exception] = PluginLoadError):
        super().__init__(problem)
        self.problem, self.cause, self.error_cls = problem, cause, error_cls


def entry_points(group: str = GROUP) -> tuple[list[EntryPoint], list[EntryPoint]]:
    """(own, others): the group's entry points deduplicated by distribution; attnkit's own
    first, the others sorted by distribution and name. A source checkout that was never
    pip-installed has no entry points of its own: ``own`` is then empty."""
    seen: set[tuple[str, str]] = set()
    own, others = [], []
    for ep in metadata.entry_points(group=group):
        dist = ep.dist.metadata["Name"] if ep.dist is not None else "<unknown>"
        version = ep.dist.version if ep.dist is not None else "?"
        key = (normalize(dist), ep.name)
        if key in seen:  # the same distribution twice on sys.path (egg-info + dist-info)
            continue
        seen.add(key)
        entry = EntryPoint(ep.name, ep.value, dist, version, ep.load, group)
        (own if entry.own else others).append(entry)
    others.sort(key=lambda e: (normalize(e.distribution), e.name))
    return own, others


def source_entry_points(group: str = GROUP) -> list[EntryPoint]:
    """attnkit's built-in modules, imported from the source tree."""
    return [
        EntryPoint(
            module.rsplit(".", 1)[1],
            module,
            OWN_DISTRIBUTION,
            "source",
            lambda module=module: importlib.import_module(module),
            group,
        )
        for module in BUILTIN_MODULES
    ]


def load_plugin(pm: pluggy.PluginManager, entry: EntryPoint) -> list[type]:
    """Import ``entry``, register it with ``pm`` and return its component classes.

    Raises:
        Rejected: anything that keeps the plugin from loading; ``pm`` is left as if it had
            never been registered.
    """
    module = _import(entry)
    plugin_name = f"{entry.distribution}:{entry.name}"
    try:
        pm.register(module, name=plugin_name)
        # pluggy reports a misspelled hook only from check_pending(), which checks every
        # plugin at once: run it after each registration instead, so that the plugin with
        # the typo is the one rejected. Every plugin registered before passed the same check
        # (or was unregistered), so whatever it finds belongs to this one.
        pm.check_pending()
        return _classes(pm, module)
    except Exception as error:
        unregister(pm, module, plugin_name)
        if isinstance(error, Rejected):
            raise
        raise Rejected(f"invalid hook: {error}{hook_hint(error)}", error) from None


def _import(entry: EntryPoint):
    """The plugin's module, imported with its attnkit requirement and Keras names checked."""
    if not entry.own:
        problem = requirement_problem(entry.distribution)
        if problem:
            raise Rejected(problem)
    before = keras_names()
    try:
        module = entry.load()
    except (Exception, SystemExit) as error:  # a plugin must never take attnkit down
        restore_keras_names(before)
        raise Rejected(f"import failed: {type(error).__name__}: {error}", error) from None
    taken = restore_keras_names(before)
    if taken and not entry.own:
        raise Rejected(
            f"importing it replaced attnkit's own Keras serializable {', '.join(taken)} "
            "(register the plugin's Keras objects under its own package, e.g. "
            "@keras.saving.register_keras_serializable(package='<distribution>')); "
            "attnkit's were put back",
            error_cls=PluginConflictError,
        )
    return module


def _classes(pm: pluggy.PluginManager, module) -> list[type]:
    """What ``module``'s ``attnkit_add_components`` returns, each class validated."""
    impls = [i for i in pm.hook.attnkit_add_components.get_hookimpls() if i.plugin is module]
    if not impls:
        raise Rejected("it defines no @attnkit.hookimpl attnkit_add_components()")
    try:
        classes = [cls for impl in impls for cls in (impl.function() or [])]
    except Exception as error:
        raise Rejected(
            f"attnkit_add_components() raised {type(error).__name__}: {error}", error
        ) from None
    for cls in classes:
        problem = validate_component_class(cls)
        if problem:
            raise Rejected(f"invalid component: {problem}")
    names = [cls.name for cls in classes]
    clashes = {n for n in names if names.count(n) > 1}
    if clashes:
        raise Rejected(f"it provides {sorted(clashes)} more than once")
    return classes
