"""The component registry: entry points in, component classes out. Knows no Keras layer.

Plugins are found through the ``attnkit`` entry-point group and managed with pluggy. attnkit's own
built-ins are declared in its ``pyproject.toml`` under that group and load the same way, first.
Loading is lazy (first :meth:`Registry.resolve` or :meth:`Registry.components`), happens once, and
is guarded by a re-entrant lock. Each entry point loads in isolation: one that fails to import or
validate (a bad component, a hook pluggy rejects, a misspelled hook, or an import that replaced
attnkit's own names in Keras' serializable registry) is reported once with an
:class:`AttnkitPluginWarning` naming the entry point, its distribution and version, and the
error, and is skipped: the plugin manager is left as if it had never been registered.

Environment switches (read when a registry is created):
    ATTNKIT_STRICT_PLUGINS=1: a broken or conflicting plugin raises instead of warning.
    ATTNKIT_DISABLE_PLUGIN_AUTOLOAD=1: load attnkit's own entry points only.
    ATTNKIT_BLOCK_PLUGINS=a,b: skip these entry-point names (or distribution names).
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import os
import re
import threading
import warnings
from collections.abc import Iterable

import attrs
import pluggy

from attnkit import hookspecs
from attnkit.components import KINDS, Mask, Pooling, Scorer
from attnkit.errors import (
    AttnkitPluginWarning,
    PluginConflictError,
    PluginLoadError,
    SpecSlotError,
    UnknownComponentError,
    did_you_mean,
)
from attnkit.resolution import Resolved, fill_slots
from attnkit.spec import Spec, is_name, parse

__all__ = ["ComponentInfo", "PluginInfo", "Registry", "registry"]

GROUP = "attnkit"
OWN_DISTRIBUTION = "attnkit"
BUILTIN_MODULES = ("attnkit.scorers", "attnkit.masks", "attnkit.poolings")
_BASES = {"scorer": Scorer, "mask": Mask, "pooling": Pooling}


@attrs.frozen
class ComponentInfo:
    """A registered component class and where it came from."""

    name: str
    kind: str
    cls: type
    plugin: str
    distribution: str
    version: str

    @property
    def builtin(self) -> bool:
        return _normalize(self.distribution) == OWN_DISTRIBUTION


@attrs.frozen
class PluginInfo:
    """One entry point and what became of it: status is loaded, broken, blocked or conflict."""

    entry_point: str
    value: str
    distribution: str
    version: str
    status: str
    error: str | None = None
    components: tuple[str, ...] = ()


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _is_frozen_attrs(cls: type) -> bool:
    return attrs.has(cls) and getattr(cls.__setattr__, "__name__", "") == "_frozen_setattrs"


def validate_component_class(cls: object) -> str | None:
    """Why ``cls`` cannot be registered as a component, or None if it can."""
    if not isinstance(cls, type):
        return f"{cls!r} is not a class"
    kinds = [kind for kind, base in _BASES.items() if issubclass(cls, base)]
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
    required = {"scorer": "score", "mask": "allowed", "pooling": "pool"}[kinds[0]]
    if getattr(cls, required) is getattr(_BASES[kinds[0]], required):
        return f"{cls.__qualname__} must implement {required}()"
    return None


class Registry:
    """Finds, validates and holds the component classes; resolves specs.

    Args:
        group: the entry-point group to read.
        strict: raise instead of warning on a broken or conflicting plugin
            (default: env ``ATTNKIT_STRICT_PLUGINS``).
        autoload: load third-party entry points (default: not env
            ``ATTNKIT_DISABLE_PLUGIN_AUTOLOAD``); attnkit's own always load.
        blocked: entry-point or distribution names to skip (default: env ``ATTNKIT_BLOCK_PLUGINS``).
    """

    def __init__(
        self,
        group: str = GROUP,
        *,
        strict: bool | None = None,
        autoload: bool | None = None,
        blocked: Iterable[str] | None = None,
    ) -> None:
        self.group = group
        self.strict = _env_flag("ATTNKIT_STRICT_PLUGINS") if strict is None else strict
        self.autoload = (
            not _env_flag("ATTNKIT_DISABLE_PLUGIN_AUTOLOAD") if autoload is None else autoload
        )
        if blocked is None:
            blocked = [b for b in os.environ.get("ATTNKIT_BLOCK_PLUGINS", "").split(",") if b]
        self.blocked = {_normalize(b.strip()) for b in blocked}
        self._lock = threading.RLock()
        self._state = "new"  # new -> loading -> loaded
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._components: dict[str, ComponentInfo] = {}
        self._conflicts: dict[str, list[ComponentInfo]] = {}
        self._plugins: list[PluginInfo] = []

    # -- loading --------------------------------------------------------------------------------
    def load(self) -> None:
        """Load every entry point once; later calls (and re-entrant ones) return at once."""
        if self._state == "loaded":
            return
        with self._lock:
            if self._state != "new":  # loaded by another thread, or re-entered from a plugin
                return
            self._state = "loading"
            try:
                own, others = self._entry_points()
                if own:
                    for ep, dist, version in own:
                        self._load_entry_point(ep.name, ep.value, dist, version, ep.load)
                else:  # a source checkout that was never pip-installed has no entry points
                    self._warn(
                        "attnkit is not installed (no 'attnkit' entry points found); "
                        "loading its built-in components from the source tree. "
                        "Run `pip install -e .` to register them properly."
                    )
                    for module in BUILTIN_MODULES:
                        short = module.rsplit(".", 1)[1]
                        self._load_entry_point(
                            short,
                            module,
                            OWN_DISTRIBUTION,
                            "source",
                            lambda m=module: importlib.import_module(m),
                        )
                for ep, dist, version in others:
                    self._load_entry_point(ep.name, ep.value, dist, version, ep.load)
            finally:
                self._state = "loaded"

    def _entry_points(self):
        """(own, others): entry points deduplicated by distribution; own first, others sorted."""
        seen: set[tuple[str, str]] = set()
        own, others = [], []
        for ep in metadata.entry_points(group=self.group):
            dist = ep.dist.metadata["Name"] if ep.dist is not None else "<unknown>"
            version = ep.dist.version if ep.dist is not None else "?"
            key = (_normalize(dist), ep.name)
            if key in seen:  # the same distribution twice on sys.path (egg-info + dist-info)
                continue
            seen.add(key)
            (own if key[0] == OWN_DISTRIBUTION else others).append((ep, dist, version))
        others.sort(key=lambda item: (_normalize(item[1]), item[0].name))
        return own, others

    def _load_entry_point(self, name, value, dist, version, load) -> None:
        own = _normalize(dist) == OWN_DISTRIBUTION
        where = (
            f"entry point '{name} = {value}' (group '{self.group}') "
            f"of distribution {dist} {version}"
        )

        def record(status: str, error: str | None = None, components=()):
            self._plugins.append(
                PluginInfo(name, value, dist, version, status, error, tuple(components))
            )

        if not own and (not self.autoload or {_normalize(name), _normalize(dist)} & self.blocked):
            record("blocked", "autoload disabled" if not self.autoload else "blocked")
            return
        if not own:
            problem = self._requirement_problem(dist)
            if problem:
                self._broken(record, where, problem)
                return
        keras_names = _keras_names()
        try:
            module = load()
        except (Exception, SystemExit) as error:  # a plugin must never take attnkit down
            _restore_keras_names(keras_names)
            self._broken(record, where, f"import failed: {type(error).__name__}: {error}", error)
            return
        taken = _restore_keras_names(keras_names)
        if taken and not own:
            self._broken(
                record,
                where,
                f"importing it replaced attnkit's own Keras serializable {', '.join(taken)} "
                "(register the plugin's Keras objects under its own package, e.g. "
                "@keras.saving.register_keras_serializable(package='<distribution>')); "
                "attnkit's were put back",
                error_cls=PluginConflictError,
            )
            return
        plugin_name = f"{dist}:{name}"
        try:
            self._pm.register(module, name=plugin_name)
            # pluggy reports a misspelled hook only from check_pending(), which checks every
            # plugin at once: run it after each registration instead, so that the plugin with
            # the typo is the one rejected. Every plugin registered before passed the same
            # check (or was unregistered), so whatever it finds belongs to this one.
            self._pm.check_pending()
        except Exception as error:  # PluginValidationError, or the module already registered
            self._unregister(module, plugin_name)
            self._broken(record, where, f"invalid hook: {error}{self._hook_hint(error)}", error)
            return
        impls = [
            impl
            for impl in self._pm.hook.attnkit_add_components.get_hookimpls()
            if impl.plugin is module
        ]
        if not impls:
            self._unregister(module, plugin_name)
            self._broken(record, where, "it defines no @attnkit.hookimpl attnkit_add_components()")
            return
        try:
            classes = [cls for impl in impls for cls in (impl.function() or [])]
        except Exception as error:
            self._unregister(module, plugin_name)
            self._broken(
                record,
                where,
                f"attnkit_add_components() raised {type(error).__name__}: {error}",
                error,
            )
            return
        for cls in classes:
            problem = validate_component_class(cls)
            if problem:
                self._unregister(module, plugin_name)
                self._broken(record, where, f"invalid component: {problem}")
                return
        names = [cls.name for cls in classes]
        clashes = {n for n in names if names.count(n) > 1}
        if clashes:
            self._unregister(module, plugin_name)
            self._broken(record, where, f"it provides {sorted(clashes)} more than once")
            return
        accepted = []
        for cls in classes:
            info = ComponentInfo(cls.name, cls.kind, cls, name, dist, version)
            if self._add(info, where):
                accepted.append(cls.name)
        record("loaded" if accepted or not classes else "conflict", None, accepted)

    def _add(self, info: ComponentInfo, where: str) -> bool:
        """Register one component; a clash with another distribution is loud, never silent."""
        if info.name in self._conflicts:
            self._conflicts[info.name].append(info)
            self._conflict_warning(info.name)
            return False
        existing = self._components.get(info.name)
        if existing is None:
            self._components[info.name] = info
            return True
        if existing.builtin:
            self._report(
                PluginConflictError,
                f"{where} provides {info.kind} '{info.name}', a name reserved by attnkit's "
                f"built-in {existing.kind}; the plugin's component is skipped. Rename it.",
            )
            return False
        del self._components[info.name]
        self._conflicts[info.name] = [existing, info]
        self._withdraw(existing)
        self._conflict_warning(info.name)
        return False

    def _withdraw(self, info: ComponentInfo) -> None:
        """Take a name that became a conflict off the record of the plugin that first gave it."""
        for i, plugin in enumerate(self._plugins):
            if (plugin.entry_point, plugin.distribution) == (info.plugin, info.distribution):
                left = tuple(n for n in plugin.components if n != info.name)
                self._plugins[i] = attrs.evolve(
                    plugin, components=left, status=plugin.status if left else "conflict"
                )

    def _conflict_warning(self, name: str) -> None:
        self._report(PluginConflictError, self._conflict_message(name))

    def _conflict_message(self, name: str) -> str:
        owners = " and ".join(
            f"{c.distribution} {c.version} ({c.kind} via entry point '{c.plugin}')"
            for c in self._conflicts[name]
        )
        return (
            f"component name '{name}' is provided by {owners}; it is unusable until one of "
            f"them is uninstalled or blocked with ATTNKIT_BLOCK_PLUGINS=<distribution>"
        )

    def _requirement_problem(self, dist: str) -> str | None:
        """A plugin declaring an attnkit requirement that this attnkit does not meet is skipped."""
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
            if _normalize(req.name) != OWN_DISTRIBUTION:
                continue
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            if req.specifier and not req.specifier.contains(mine, prereleases=True):
                return f"it requires {req}; this is attnkit {mine}"
        return None

    def _unregister(self, module, plugin_name: str) -> None:
        # pluggy leaves a plugin registered when its validation fails (pluggy#733).
        if self._pm.has_plugin(plugin_name) or self._pm.is_registered(module):
            try:
                self._pm.unregister(
                    plugin=module if self._pm.is_registered(module) else None, name=plugin_name
                )
            except ValueError:  # pragma: no cover - registered under another name
                pass
        # unregister() empties the caller pluggy made for an unknown (misspelled) hook but keeps
        # it; drop it, so the manager looks as if the plugin had never been registered.
        for hook_name, caller in list(vars(self._pm.hook).items()):
            if (
                not hook_name.startswith("_")
                and isinstance(caller, pluggy.HookCaller)
                and not caller.has_spec()
                and not caller.get_hookimpls()
            ):
                delattr(self._pm.hook, hook_name)

    @staticmethod
    def _hook_hint(error: Exception) -> str:
        """For an unknown hook, the hook it was probably meant to be (or the hooks there are)."""
        match = re.match(r"unknown hook '([^']+)'", str(error))
        if not match:
            return ""
        known = [n for n in vars(hookspecs) if n.startswith("attnkit_")]
        close = did_you_mean(match.group(1), known)
        if close:
            return f"; did you mean '{close[0]}'?"
        return f"; attnkit's hooks are: {', '.join(sorted(known))}"

    def _broken(
        self,
        record,
        where: str,
        problem: str,
        cause: BaseException | None = None,
        error_cls: type[Exception] = PluginLoadError,
    ) -> None:
        record("broken", problem)
        self._report(error_cls, f"skipping {where}: {problem}", cause)

    def _report(self, error_cls: type[Exception], message: str, cause=None) -> None:
        if self.strict:
            raise error_cls(message) from cause
        self._warn(message)

    @staticmethod
    def _warn(message: str) -> None:
        warnings.warn(message, AttnkitPluginWarning, stacklevel=4)

    # -- queries --------------------------------------------------------------------------------
    def components(self, kind: str | None = None) -> list[ComponentInfo]:
        """Every usable component (optionally of one kind), sorted by kind and name."""
        self.load()
        found = [c for c in self._components.values() if kind is None or c.kind == kind]
        return sorted(found, key=lambda c: (KINDS.index(c.kind), c.name))

    # `attnkit.registry().list()` reads naturally; methods still see the builtin `list`.
    list = components

    def plugins(self) -> list[PluginInfo]:
        """Every entry point seen, with its status (loaded, broken, blocked, conflict)."""
        self.load()
        return list(self._plugins)

    def get(self, name: str) -> ComponentInfo:
        """The component registered under ``name``.

        Raises:
            PluginConflictError: two distributions provide the name.
            UnknownComponentError: nothing does.
        """
        self.load()
        if name in self._conflicts:
            raise PluginConflictError(self._conflict_message(name))
        try:
            return self._components[name]
        except KeyError:
            raise UnknownComponentError(
                f"unknown component {name!r}", hint=self.suggest(name)
            ) from None

    def suggest(self, name: str, kind: str | None = None) -> str:
        """Did-you-mean lines for an unknown name: close names, broken plugins, valid names."""
        known = list(self._components) + list(self._conflicts)
        close = did_you_mean(name, known)
        lines = []
        if close:
            lines.append("did you mean " + " or ".join(repr(c) for c in close) + "?")
        for plugin in self._plugins:
            if plugin.status == "broken" and (
                plugin.entry_point == name or did_you_mean(name, [plugin.entry_point])
            ):
                lines.append(
                    f"plugin '{plugin.entry_point}' of {plugin.distribution} {plugin.version} "
                    f"is installed but failed to load: {plugin.error}"
                )
        for k in KINDS if kind is None else (kind,):
            names = [c.name for c in self.components(k)]
            lines.append(f"valid {k}s: {', '.join(names) if names else '(none)'}")
        return "\n".join(lines)

    def resolve_token(self, text: str):
        """One component instance from one token's text, e.g. ``"local15"``."""
        parsed = parse(text)
        if len(parsed.tokens) != 1:
            raise SpecSlotError(f"expected one token, got {text!r}", text, 0, len(text))
        token = parsed.tokens[0]
        return self.get(token.name).cls.from_token(token, text)

    def resolve(self, spec: str | Spec) -> Resolved:
        """Resolve spec text (or a parsed Spec) to component instances.

        Slots: exactly one scorer; zero or more masks, ANDed (none means ``full``; ``full``
        cannot be combined with another mask); at most one pooling (none means ``seq``).

        Raises:
            SpecError: any problem, with a caret under the offending token.
        """
        parsed = spec if isinstance(spec, Spec) else parse(spec)
        self.load()
        return fill_slots(self, parsed)


#: Keras' serializable names under attnkit's package, e.g. ``attnkit>AttentionLayer``.
_KERAS_PREFIX = "attnkit>"


def _keras_names() -> dict[str, object] | None:
    """attnkit's entries in Keras' serializable registry (None before Keras is imported)."""
    import sys

    # Importing Keras only for this check would make the registry cost a Keras import.
    if "keras" not in sys.modules:
        return None
    import keras

    return {
        key: obj
        for key, obj in keras.saving.get_custom_objects().items()
        if key.startswith(_KERAS_PREFIX)
    }


def _restore_keras_names(before: dict[str, object] | None) -> list[str]:
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


_default: Registry | None = None
_default_lock = threading.Lock()


def registry() -> Registry:
    """The process-wide registry (created on first use; plugins load on first query)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Registry()
    return _default
