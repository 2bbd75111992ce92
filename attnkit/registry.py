"""The component registry: entry points in, component classes out. Knows no Keras layer.

Plugins are found through the ``attnkit`` entry-point group and managed with pluggy. attnkit's own
built-ins are declared in its ``pyproject.toml`` under that group and load the same way, first.
Loading is lazy (first :meth:`Registry.resolve` or :meth:`Registry.components`), happens once, and
is guarded by a re-entrant lock. Each entry point loads in isolation: one that fails to import or
validate (a bad component, a hook pluggy rejects, a misspelled hook, or an import that replaced
attnkit's own names in Keras' serializable registry; :mod:`attnkit.plugin_checks`) is reported
once with an :class:`AttnkitPluginWarning` naming the entry point, its distribution and version,
and the error, and is skipped: the plugin manager is left as if it had never been registered.

Environment switches (read when a registry is created):
    ATTNKIT_STRICT_PLUGINS=1: a broken or conflicting plugin raises instead of warning.
    ATTNKIT_DISABLE_PLUGIN_AUTOLOAD=1: load attnkit's own entry points only.
    ATTNKIT_BLOCK_PLUGINS=a,b: skip these entry-point names (or distribution names).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterable
from typing import Any

import attrs
import pluggy

from attnkit import hookspecs
from attnkit.components import KINDS, Component
from attnkit.errors import (
    AttnkitPluginWarning,
    PluginConflictError,
    SpecSlotError,
    UnknownComponentError,
    did_you_mean,
)
from attnkit.plugin_loading import (
    GROUP,
    OWN_DISTRIBUTION,
    EntryPoint,
    Rejected,
    entry_points,
    load_plugin,
    normalize,
    source_entry_points,
    validate_component_class,
)
from attnkit.resolution import DEFAULT_POOLING, Resolved, assemble
from attnkit.spec import Spec, parse

__all__ = ["ComponentInfo", "PluginInfo", "Registry", "registry", "validate_component_class"]


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
        return normalize(self.distribution) == OWN_DISTRIBUTION


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


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


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
        self.blocked = {normalize(b.strip()) for b in blocked}
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
                own, others = entry_points(self.group)
                if not own:  # a source checkout that was never pip-installed has no entry points
                    self._warn(
                        "attnkit is not installed (no 'attnkit' entry points found); "
                        "loading its built-in components from the source tree. "
                        "Run `pip install -e .` to register them properly."
                    )
                    own = source_entry_points(self.group)
                for entry in own + others:
                    self._load_entry_point(entry)
            finally:
                self._state = "loaded"

    def _load_entry_point(self, entry: EntryPoint) -> None:
        names = {normalize(entry.name), normalize(entry.distribution)}
        if not entry.own and (not self.autoload or names & self.blocked):
            self._record(entry, "blocked", "autoload disabled" if not self.autoload else "blocked")
            return
        try:
            classes = load_plugin(self._pm, entry)
        except Rejected as rejected:
            self._record(entry, "broken", rejected.problem)
            self._report(
                rejected.error_cls, f"skipping {entry.where}: {rejected.problem}", rejected.cause
            )
            return
        accepted = []
        for cls in classes:
            info = ComponentInfo(
                cls.name, cls.kind, cls, entry.name, entry.distribution, entry.version
            )
            if self._add(info, entry.where):
                accepted.append(cls.name)
        self._record(entry, "loaded" if accepted or not classes else "conflict", None, accepted)

    def _record(self, entry: EntryPoint, status: str, error=None, components=()) -> None:
        self._plugins.append(
            PluginInfo(
                entry.name,
                entry.value,
                entry.distribution,
                entry.version,
                status,
                error,
                tuple(components),
            )
        )

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
        text = parsed.text or str(parsed)
        found: list[tuple[Component, Any]] = []
        plugins: dict[str, str] = {}
        for token in parsed.tokens:
            try:
                info = self.get(token.name)
            except UnknownComponentError:
                raise UnknownComponentError(
                    f"unknown component '{token.name}'",
                    text,
                    token.start,
                    token.start + len(token.name),
                    self.suggest(token.name),
                ) from None
            found.append((info.cls.from_token(token, text), token))
            if not info.builtin:
                plugins[info.name] = f"{info.distribution}=={info.version}"
        scorers = [c.name for c in self.components("scorer")]
        default = self.get(DEFAULT_POOLING).cls()
        return assemble(text, found, default, scorers, plugins)

    def origin(self, component: Component) -> str:
        """Where ``component``'s class comes from: ``"from <distribution> <version>"``, or
        ``"not registered"``."""
        for info in self.components():
            if info.cls is type(component):
                return f"from {info.distribution} {info.version}"
        return "not registered"


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
