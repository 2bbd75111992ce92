"""The registry: entry points in, component classes out (guarantees P1-P6).

Every test builds a fresh ``attnkit.Registry()`` (never the process-wide one) and installs fake
distributions under ``tmp_path``: a ``<name>-<version>.dist-info`` folder with ``METADATA`` and
``entry_points.txt``, and the plugin module beside it, prepended to ``sys.path``. Module names
are unique per test so that ``sys.modules`` cannot carry a plugin from one test to the next.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import itertools
import os
import subprocess
import sys
import textwrap
import threading
import warnings
from unittest import mock

import keras
import numpy as np
import pluggy
import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.specifiers import SpecifierSet
from support.fakedists import GOOD_PLUGIN, FakeDists, clean_plugin_env, only_attnkit_and

import attnkit
import attnkit.masks
import attnkit.scorers
from attnkit import (
    AttnkitPluginWarning,
    PluginConflictError,
    PluginLoadError,
    Registry,
    UnknownComponentError,
)
from attnkit.plugin_loading import requirement_problem

registry_module = importlib.import_module("attnkit.registry")

BUILTIN = {
    "scorer": {"dot", "general", "additive", "bahdanau", "gaussian", "dense", "concat"},
    "mask": {"full", "local", "causal"},
    "pooling": {"seq", "last", "weighted", "gate"},
}
BUILTIN_ENTRY_POINTS = {"scorers", "masks", "poolings"}


@pytest.fixture(autouse=True)
def only_attnkit_and_fakes(tmp_path, monkeypatch):
    """Hide real third-party plugins installed in this environment (see fakedists)."""
    only_attnkit_and(tmp_path, monkeypatch)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    clean_plugin_env(monkeypatch)
    dists = FakeDists(tmp_path, monkeypatch)
    yield dists
    dists.cleanup()


def plugin_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, AttnkitPluginWarning)]


def names(reg: Registry, kind: str | None = None) -> set[str]:
    return {c.name for c in reg.components(kind)}


def status(reg: Registry, entry_point: str) -> attnkit.registry.PluginInfo:
    (info,) = [p for p in reg.plugins() if p.entry_point == entry_point]
    return info


@pytest.fixture
def quiet():
    """Assert a block of code emits no warning at all (not only none that filterwarnings sees)."""

    class Quiet:
        def __enter__(self):
            self._cm = warnings.catch_warnings(record=True)
            self.record = self._cm.__enter__()
            warnings.simplefilter("always")
            return self

        def __exit__(self, *exc):
            self._cm.__exit__(*exc)
            assert [str(w.message) for w in self.record] == []

    return Quiet()


# -- built-ins --------------------------------------------------------------------------------


def test_builtins_load_from_attnkits_own_entry_points(fake, quiet):
    reg = Registry()
    with quiet:
        for kind, expected in BUILTIN.items():
            assert expected <= names(reg, kind)
            for info in reg.components(kind):
                assert info.kind == kind
                if info.name in expected:
                    assert info.distribution == "attnkit"
                    assert info.builtin
                    assert info.plugin in BUILTIN_ENTRY_POINTS
                    assert info.cls.name == info.name
                    assert info.cls.kind == kind
        plugins = {p.entry_point: p for p in reg.plugins() if p.distribution == "attnkit"}
    assert set(plugins) == BUILTIN_ENTRY_POINTS
    assert {p.status for p in plugins.values()} == {"loaded"}
    assert set(plugins["scorers"].components) == BUILTIN["scorer"]
    assert set(plugins["masks"].components) == BUILTIN["mask"]
    assert set(plugins["poolings"].components) == BUILTIN["pooling"]
    assert plugins["scorers"].value == "attnkit.scorers"


def test_listing(fake):
    reg = Registry()
    everything = reg.components()
    assert reg.list() == everything
    assert reg.list("mask") == reg.components("mask")
    kinds = [c.kind for c in everything]
    assert kinds == sorted(kinds, key=("scorer", "mask", "pooling").index)  # sorted by kind
    scorers = [c.name for c in reg.components("scorer")]
    assert scorers == sorted(scorers)
    assert {c.name for c in everything} == set().union(*BUILTIN.values())
    assert reg.get("local").cls is attnkit.masks.Local
    with pytest.raises(UnknownComponentError):
        reg.get("nope")


def test_p6_loading_is_lazy_all_at_first_use_and_once(fake):
    """Deliberate deviation from P6's "lazy, on first use of a name": the first query of any
    kind (resolving even a built-in name, listing) loads every plugin at once, under one lock.
    Per-name loading would need each plugin to declare its names in metadata, which entry
    points cannot; and "unknown name" errors can only list close names (G4) from everything."""
    module = fake.good("attnkit-lazy")
    reg = Registry()
    assert module not in sys.modules  # creating a registry imports nothing
    assert reg._components == {}
    reg.resolve("dot")  # a built-in name: the plugin loads all the same
    assert module in sys.modules
    assert reg.resolve("cosine").plugins == {"cosine": "attnkit-lazy==1.0"}
    first = reg.plugins()
    reg.load()
    reg.components()
    assert reg.plugins() == first  # nothing loaded twice


def test_a_good_plugin_loads_and_resolves(fake):
    fake.good("attnkit-cosine", version="2.3")
    reg = Registry()
    resolved = reg.resolve("causal+cosine(temperature=0.5)")
    assert resolved.canonical == "cosine(temperature=0.5)+causal"
    assert type(resolved.scorer).__name__ == "Cosine"
    assert resolved.scorer.temperature == 0.5
    assert resolved.plugins == {"cosine": "attnkit-cosine==2.3"}
    info = reg.get("cosine")
    assert (info.kind, info.distribution, info.version, info.builtin) == (
        "scorer",
        "attnkit-cosine",
        "2.3",
        False,
    )
    assert status(reg, "good").status == "loaded"
    assert status(reg, "good").components == ("cosine",)
    assert reg.resolve(resolved.canonical) == resolved


# -- P1: broken plugins -----------------------------------------------------------------------

BROKEN_SOURCES = {
    "runtime": ("raise RuntimeError('boom {tag}')\n", "RuntimeError", "boom {tag}"),
    "import": ("raise ImportError('no backend {tag}')\n", "ImportError", "no backend {tag}"),
    "missing": (
        "import attnkit_no_such_module_{tag}\n",
        "ModuleNotFoundError",
        "attnkit_no_such_module_{tag}",
    ),
    "syntax": ("def broken(:\n    pass\n", "SyntaxError", "invalid syntax"),
    "exit": ("import sys\nsys.exit(3)\n", "SystemExit", "3"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN_SOURCES))
def test_p1_broken_plugin_is_skipped_with_one_warning(fake, kind, quiet):
    source, error_type, error_text = BROKEN_SOURCES[kind]
    broken = fake.module_name("broken")
    fake.add(
        "attnkit-broken", {broken: source.format(tag=fake.tag)}, {"brokenep": broken}, version="0.7"
    )
    fake.good("attnkit-good")
    reg = Registry()
    with pytest.warns(AttnkitPluginWarning) as record:
        resolved = reg.resolve("cosine+causal")
    messages = plugin_warnings(record)
    assert len(messages) == 1, messages
    (message,) = messages
    assert "brokenep" in message
    assert broken in message  # the entry point's value
    assert "group 'attnkit'" in message
    assert "attnkit-broken" in message and "0.7" in message
    assert error_type in message
    assert error_text.format(tag=fake.tag) in message
    # The good plugin beside it and the built-ins load.
    assert resolved.canonical == "cosine+causal"
    assert BUILTIN["scorer"] <= names(reg, "scorer")
    info = status(reg, "brokenep")
    assert info.status == "broken"
    assert error_type in info.error
    assert info.distribution == "attnkit-broken" and info.version == "0.7"
    assert info.components == ()
    assert status(reg, "good").status == "loaded"
    # Loading again reports nothing more.
    with quiet:
        reg.load()
        reg.resolve("cosine")
        reg.plugins()


def test_p1_keyboard_interrupt_is_not_swallowed(fake):
    module = fake.module_name("interrupt")
    fake.add("attnkit-interrupt", {module: "raise KeyboardInterrupt\n"})
    with pytest.raises(KeyboardInterrupt):
        Registry().load()


@pytest.mark.parametrize("how", ["argument", "env"])
def test_p1_strict_mode_raises_with_the_cause_chained(fake, monkeypatch, how):
    broken = fake.module_name("broken")
    fake.add(
        "attnkit-broken", {broken: f"raise RuntimeError('boom {fake.tag}')\n"}, {"brokenep": broken}
    )
    if how == "env":
        monkeypatch.setenv("ATTNKIT_STRICT_PLUGINS", "1")
        reg = Registry()
    else:
        reg = Registry(strict=True)
    assert reg.strict
    with pytest.raises(PluginLoadError) as info:
        reg.load()
    assert isinstance(info.value, ImportError)  # PluginLoadError is an ImportError
    assert "attnkit-broken" in str(info.value) and "brokenep" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert str(info.value.__cause__) == f"boom {fake.tag}"


def test_p1_strict_mode_off_by_env_value(fake, monkeypatch):
    monkeypatch.setenv("ATTNKIT_STRICT_PLUGINS", "0")
    assert not Registry().strict
    assert Registry(strict=True).strict


def test_p1_entry_point_to_a_missing_attribute(fake):
    module = fake.module_name("attr")
    fake.add(
        "attnkit-attr", {module: GOOD_PLUGIN.format(name="cosine")}, {"attrep": f"{module}:missing"}
    )
    reg = Registry()
    with pytest.warns(AttnkitPluginWarning) as record:
        reg.load()
    (message,) = plugin_warnings(record)
    assert f"{module}:missing" in message
    assert "attnkit-attr" in message and "AttributeError" in message and "missing" in message
    assert status(reg, "attrep").status == "broken"
    assert "cosine" not in names(reg)


def test_p1_entry_point_to_an_attribute_that_holds_the_hooks(fake):
    """'module:attr' pointing at an object with the hook is a valid plugin."""
    module = fake.module_name("attrok")
    source = GOOD_PLUGIN.format(name="cosine") + textwrap.dedent("""
        class Holder:
            attnkit_add_components = staticmethod(attnkit_add_components)
        holder = Holder()
    """)
    fake.add("attnkit-attrok", {module: source}, {"attrok": f"{module}:holder"})
    reg = Registry()
    assert reg.resolve("cosine").plugins == {"cosine": "attnkit-attrok==1.0"}


# -- P3: components and hooks that fail validation -----------------------------------------------

GOOD_AND_BAD = """
import attrs, attnkit
from keras import ops

@attrs.frozen
class Cosine(attnkit.Scorer):
    name = "cosine"
    def score(self, params, query, key):
        return ops.matmul(query, ops.swapaxes(key, -1, -2))

{bad}

@attnkit.hookimpl
def attnkit_add_components():
    return [Cosine, Bad]
"""

BAD_COMPONENTS = {
    "not_attrs": (
        """
        class Bad(attnkit.Mask):
            name = "badmask"
            def allowed(self, q, k):
                return q >= k
        """,
        "attrs frozen",
    ),
    "mutable_attrs": (
        """
        @attrs.define
        class Bad(attnkit.Mask):
            name = "badmask"
            def allowed(self, q, k):
                return q >= k
        """,
        "attrs frozen",
    ),
    "name_ends_in_digit": (
        """
        @attrs.frozen
        class Bad(attnkit.Mask):
            name = "band2"
            def allowed(self, q, k):
                return q >= k
        """,
        "band2",
    ),
    "upper_case_name": (
        """
        @attrs.frozen
        class Bad(attnkit.Mask):
            name = "Band"
            def allowed(self, q, k):
                return q >= k
        """,
        "Band",
    ),
    "no_base": (
        """
        @attrs.frozen
        class Bad:
            name = "badmask"
            def allowed(self, q, k):
                return q >= k
        """,
        "subclass",
    ),
    "missing_score": (
        """
        @attrs.frozen
        class Bad(attnkit.Scorer):
            name = "lazy"
        """,
        "score()",
    ),
    "not_a_class": (
        """
        Bad = "badmask"
        """,
        "not a class",
    ),
    "bad_shorthand": (
        """
        @attrs.frozen
        class Bad(attnkit.Mask):
            name = "badmask"
            shorthand = "size"
            width: int = 1
            def allowed(self, q, k):
                return q >= k
        """,
        "shorthand",
    ),
    "duplicate_name": (
        """
        @attrs.frozen
        class Bad(attnkit.Mask):
            name = "cosine"
            def allowed(self, q, k):
                return q >= k
        """,
        "more than once",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_COMPONENTS))
def test_p3_plugin_with_an_invalid_component_is_rejected_as_a_whole(fake, case):
    _rejected_as_a_whole(fake, *BAD_COMPONENTS[case])


#: A pooling without prepare(), a default no spec can write: refused when the plugin loads.
UNLOADABLE = {
    "pooling_without_prepare": (
        """
        @attrs.frozen
        class Bad(attnkit.Pooling):
            name = "badmask"
            def pool(self, params, context, weights, prepared, value):
                return context, weights
        """,
        "must implement prepare()",
    ),
    "default_with_both_quotes": (
        """
        @attrs.frozen
        class Bad(attnkit.Scorer):
            name = "badmask"
            label: str = attnkit.param("it's \\"quoted\\"", doc="a label")
            def score(self, params, query, key):
                return ops.matmul(query, ops.swapaxes(key, -1, -2))
        """,
        "defaults to",
    ),
    "default_inf": (
        """
        @attrs.frozen
        class Bad(attnkit.Scorer):
            name = "badmask"
            limit: float = attnkit.param(float("inf"), doc="a bound")
            def score(self, params, query, key):
                return ops.matmul(query, ops.swapaxes(key, -1, -2))
        """,
        "reads back as 'inf'",
    ),
}


@pytest.mark.parametrize("case", ["pooling_without_prepare"])
def test_p8_pooling_without_prepare_is_rejected_when_it_loads(fake, case):
    _rejected_as_a_whole(fake, *UNLOADABLE[case])


@pytest.mark.parametrize("case", ["default_with_both_quotes", "default_inf"])
def test_p7_default_no_spec_can_write_is_rejected_when_it_loads(fake, case):
    """Rejected and named when the plugin loads; `attnkit list --json` and resolving a name
    still work (a SpecError, not a bare ValueError)."""
    reg = _rejected_as_a_whole(fake, *UNLOADABLE[case])
    with pytest.raises(UnknownComponentError):
        reg.resolve("badmask(lable=1)")
    with pytest.raises(UnknownComponentError):
        reg.resolve("badmask15")


def _rejected_as_a_whole(fake, bad: str, reason: str) -> Registry:
    """Load a plugin with one good and one bad component: one warning naming the entry point,
    the distribution, its version and ``reason``; neither component registered; the plugin
    manager as before; another plugin unaffected. Returns the registry."""
    module = fake.module_name("bad")
    fake.add(
        "attnkit-bad",
        {module: GOOD_AND_BAD.format(bad=textwrap.dedent(bad))},
        {"badep": module},
        version="0.2",
    )
    fake.good("attnkit-good", component="other")
    reg = Registry()
    with pytest.warns(AttnkitPluginWarning) as record:
        reg.load()
    (message,) = plugin_warnings(record)
    assert "badep" in message and "attnkit-bad" in message and "0.2" in message
    assert reason in message
    # Neither the bad class nor its good sibling is registered.
    assert names(reg).isdisjoint({"cosine", "badmask", "band2", "lazy"})
    with pytest.raises(UnknownComponentError):
        reg.resolve("cosine")
    info = status(reg, "badep")
    assert info.status == "broken" and info.components == ()
    # The rejected module left nothing behind in the plugin manager.
    assert all(reg._pm.get_name(p) != "attnkit-bad:badep" for p in reg._pm.get_plugins())
    assert not reg._pm.has_plugin("attnkit-bad:badep")
    # The other plugin is unaffected.
    assert reg.resolve("other").plugins == {"other": "attnkit-good==1.0"}
    return reg


def test_p3_hook_that_raises_is_rejected(fake):
    module = fake.module_name("hookraise")
    fake.add(
        "attnkit-hookraise",
        {
            module: """
        import attnkit
        @attnkit.hookimpl
        def attnkit_add_components():
            raise LookupError("no components today")
    """
        },
        {"hookraise": module},
    )
    reg = Registry()
    with pytest.warns(AttnkitPluginWarning) as record:
        reg.load()
    (message,) = plugin_warnings(record)
    assert "LookupError" in message and "no components today" in message
    assert "attnkit-hookraise" in message
    assert not reg._pm.has_plugin("attnkit-hookraise:hookraise")


HOOK_FAULTS = {
    "extra_argument": (
        """
        @attnkit.hookimpl
        def attnkit_add_components(extra):
            return [Cosine]
        """,
        "extra",
    ),
    "wrapper_not_generator": (
        """
        @attnkit.hookimpl(wrapper=True)
        def attnkit_add_components():
            return [Cosine]
        """,
        "generator",
    ),
    "misspelled_hook": (
        """
        @attnkit.hookimpl
        def attnkit_add_component():
            return [Cosine]
        """,
        "attnkit_add_components",
    ),
    # A good hook beside a typo: pluggy finds the typo only in check_pending(), which must run
    # per plugin, so that its PluginValidationError names that plugin and stays inside load().
    "misspelled_extra_hook": (
        """
        @attnkit.hookimpl
        def attnkit_add_components():
            return [Cosine]

        @attnkit.hookimpl
        def attnkit_add_componentz():
            return [Cosine]
        """,
        "unknown hook 'attnkit_add_componentz'",
    ),
    "no_hook": ("", "attnkit_add_components"),
}


@pytest.mark.parametrize("fault", sorted(HOOK_FAULTS))
def test_p3_plugin_with_a_bad_hook_leaves_the_manager_as_before(fake, fault):
    hook, reason = HOOK_FAULTS[fault]
    source = textwrap.dedent("""
        import attrs, attnkit
        from keras import ops

        @attrs.frozen
        class Cosine(attnkit.Scorer):
            name = "cosine"
            def score(self, params, query, key):
                return ops.matmul(query, ops.swapaxes(key, -1, -2))
    """) + textwrap.dedent(hook)
    module = fake.module_name("hook")
    fake.add("attnkit-hook", {module: source}, {"hookep": module}, version="4.5")

    baseline = Registry(blocked=["attnkit-hook"])
    baseline.load()
    reg = Registry()
    with pytest.warns(AttnkitPluginWarning) as record:
        reg.load()
    (message,) = plugin_warnings(record)
    assert "hookep" in message and "attnkit-hook" in message and "4.5" in message
    assert reason in message
    assert status(reg, "hookep").status == "broken"
    assert "cosine" not in names(reg)
    # Exactly the plugins and hook implementations of a registry that never saw it.
    assert sorted(name for name, _ in reg._pm.list_name_plugin()) == sorted(
        name for name, _ in baseline._pm.list_name_plugin()
    )
    assert len(reg._pm.get_plugins()) == len(baseline._pm.get_plugins())
    assert [impl.plugin_name for impl in reg._pm.hook.attnkit_add_components.get_hookimpls()] == [
        impl.plugin_name for impl in baseline._pm.hook.attnkit_add_components.get_hookimpls()
    ]
    assert sys.modules[module] not in reg._pm.get_plugins()
    hooks = sorted(n for n in vars(reg._pm.hook) if not n.startswith("_"))
    assert hooks == sorted(n for n in vars(baseline._pm.hook) if not n.startswith("_"))
    reg._pm.check_pending()  # no unknown hook left behind


def test_p3_misspelled_extra_hook_is_a_warning(fake, monkeypatch):
    """A plugin with a valid hook and a misspelled one: that plugin is reported, quoting pluggy,
    with the hook it was probably meant to be; every other plugin loads; strict mode raises."""
    module = fake.module_name("typo")
    source = GOOD_PLUGIN.format(name="cosine") + textwrap.dedent("""
        @attnkit.hookimpl
        def attnkit_add_componentz():
            return [Cosine]
    """)
    fake.add("attnkit-typo", {module: source}, {"typo": module}, version="0.4")
    fake.good("attnkit-good", component="other")
    reg = Registry()
    with pytest.warns(AttnkitPluginWarning) as record:
        reg.load()  # pluggy.PluginValidationError must not escape from here
    (message,) = plugin_warnings(record)
    assert "'typo = " in message and "attnkit-typo 0.4" in message
    assert "unknown hook 'attnkit_add_componentz' in plugin" in message  # pluggy's words
    assert "did you mean 'attnkit_add_components'?" in message
    assert status(reg, "typo").status == "broken"
    assert "cosine" not in names(reg)
    assert reg.resolve("other").plugins == {"other": "attnkit-good==1.0"}
    assert not reg._pm.has_plugin("attnkit-typo:typo")
    assert not hasattr(reg._pm.hook, "attnkit_add_componentz")

    monkeypatch.setenv("ATTNKIT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="attnkit_add_componentz") as info:
        Registry().load()
    assert isinstance(info.value.__cause__, pluggy.PluginValidationError)


# -- P2: name collisions ----------------------------------------------------------------------


def test_p2_two_distributions_with_one_name_conflict(fake, monkeypatch):
    folders = {}
    for short, version in (("alpha", "1.1"), ("beta", "2.2")):
        module = fake.module_name(short)
        folders[short] = fake.add(
            f"attnkit-{short}",
            {module: GOOD_PLUGIN.format(name="cosine")},
            {short: module},
            version=version,
            prepend=False,
        )
    base_path = list(sys.path)
    outcomes = []
    for order in itertools.permutations(["alpha", "beta"]):
        monkeypatch.setattr(sys, "path", [str(folders[o]) for o in order] + base_path)
        importlib.invalidate_caches()
        found = [
            d.metadata["Name"]
            for d in importlib.metadata.distributions()
            if d.metadata["Name"] in ("attnkit-alpha", "attnkit-beta")
        ]
        assert found == [f"attnkit-{o}" for o in order]  # sys.path order really differs
        reg = Registry()
        with pytest.warns(AttnkitPluginWarning) as record:
            reg.load()
        messages = plugin_warnings(record)
        assert any(
            "attnkit-alpha 1.1" in m and "attnkit-beta 2.2" in m and "'cosine'" in m
            for m in messages
        ), messages
        for call in (lambda: reg.get("cosine"), lambda: reg.resolve("cosine+causal")):
            with pytest.raises(PluginConflictError) as info:
                call()
            message = str(info.value)
            assert "attnkit-alpha 1.1" in message and "attnkit-beta 2.2" in message
            assert "ATTNKIT_BLOCK_PLUGINS" in message
        assert "cosine" not in names(reg)
        outcomes.append(
            (
                messages,
                str(info.value),
                sorted((p.entry_point, p.status, p.components) for p in reg.plugins()),
            )
        )
    # The outcome does not depend on sys.path order.
    assert outcomes[0] == outcomes[1]


def test_p2_conflicting_plugins_are_both_marked_conflict(fake):
    """P2: two plugins with one name are both marked `conflict`."""
    fake.good("attnkit-alpha", stem="alpha", entry_points=None)
    fake.good("attnkit-beta", stem="beta", entry_points=None)
    reg = Registry()
    with pytest.warns(AttnkitPluginWarning):
        reg.load()
    statuses = {p.distribution: p.status for p in reg.plugins() if p.distribution != "attnkit"}
    assert statuses == {"attnkit-alpha": "conflict", "attnkit-beta": "conflict"}


def test_p2_conflict_is_resolved_by_blocking_one_there_is_no_prefer(fake, monkeypatch):
    """Deliberate deviation from P2: there is no ``attnkit.plugins.prefer(name, dist=...)``.
    The block list (env ``ATTNKIT_BLOCK_PLUGINS`` or ``Registry(blocked=...)``) is the one way
    to pick: a preference would be a second, order-dependent switch deciding which code runs
    under a name, where blocking states which distribution must not load at all."""
    assert not hasattr(attnkit, "plugins")
    fake.good("attnkit-alpha", stem="alpha")
    fake.good("attnkit-beta", stem="beta")
    monkeypatch.setenv("ATTNKIT_BLOCK_PLUGINS", "attnkit-beta")
    reg = Registry()
    assert reg.resolve("cosine").plugins == {"cosine": "attnkit-alpha==1.0"}


def test_p2_conflict_in_strict_mode_raises(fake):
    fake.good("attnkit-alpha", stem="alpha")
    fake.good("attnkit-beta", stem="beta")
    with pytest.raises(PluginConflictError, match="attnkit-alpha.*attnkit-beta"):
        Registry(strict=True).load()


def test_p2_plugin_cannot_take_a_builtin_name(fake):
    fake.good("attnkit-impostor", component="dot", version="6.6")
    reg = Registry()
    with pytest.warns(AttnkitPluginWarning) as record:
        resolved = reg.resolve("dot+causal")
    (message,) = plugin_warnings(record)
    assert "attnkit-impostor" in message and "6.6" in message and "'dot'" in message
    assert type(resolved.scorer) is attnkit.scorers.Dot
    assert resolved.plugins == {}
    assert reg.get("dot").distribution == "attnkit"
    assert reg.get("dot").builtin
    assert status(reg, "good").components == ()
    assert status(reg, "good").status != "loaded"


def test_p2_plugin_cannot_take_a_builtin_name_of_another_kind(fake):
    """Names are unique across kinds: a scorer called 'local' is refused too."""
    fake.good("attnkit-impostor", component="local")
    reg = Registry()
    with pytest.warns(AttnkitPluginWarning, match="attnkit-impostor"):
        reg.load()
    assert reg.get("local").kind == "mask"
    assert reg.get("local").builtin


def test_p2_same_distribution_twice_on_sys_path_loads_once(fake, quiet):
    module = fake.module_name("twice")
    for folder in ("copy1", "copy2"):
        fake.add(
            "attnkit-twice",
            {module: GOOD_PLUGIN.format(name="cosine")},
            {"twice": module},
            folder=folder,
        )
    reg = Registry()
    with quiet:
        resolved = reg.resolve("cosine")
    assert resolved.plugins == {"cosine": "attnkit-twice==1.0"}
    assert [p.entry_point for p in reg.plugins()].count("twice") == 1


def test_p2_egg_info_and_dist_info_copies_load_once(fake, quiet):
    """One distribution as a dist-info on one sys.path entry and an egg-info on another."""
    module = fake.module_name("egg")
    fake.add("attnkit-egg", {module: GOOD_PLUGIN.format(name="cosine")}, {"egg": module})
    egg_root = fake.tmp_path / "egg-copy"
    info = egg_root / "attnkit_egg.egg-info"
    info.mkdir(parents=True)
    (info / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: attnkit-egg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[attnkit]\negg = {module}\n")
    fake.monkeypatch.syspath_prepend(str(egg_root))
    found = [d for d in importlib.metadata.distributions() if d.metadata["Name"] == "attnkit-egg"]
    assert len(found) == 2  # both copies really are visible
    reg = Registry()
    with quiet:
        assert reg.resolve("cosine").plugins == {"cosine": "attnkit-egg==1.0"}
    assert [p.entry_point for p in reg.plugins()].count("egg") == 1


# -- autoload switch and block list -----------------------------------------------------------


@pytest.mark.parametrize("how", ["argument", "env"])
def test_p1_autoload_disabled_loads_builtins_only(fake, monkeypatch, how, quiet):
    module = fake.good("attnkit-good")
    broken = fake.module_name("broken")
    fake.add(
        "attnkit-broken", {broken: "raise RuntimeError('never imported')\n"}, {"brokenep": broken}
    )
    if how == "env":
        monkeypatch.setenv("ATTNKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
        reg = Registry()
    else:
        reg = Registry(autoload=False)
    with quiet:  # the broken plugin is not even imported, so it cannot warn
        assert not reg.autoload
        for kind, expected in BUILTIN.items():
            assert expected <= names(reg, kind)
        assert "cosine" not in names(reg)
    assert module not in sys.modules and broken not in sys.modules
    assert status(reg, "good").status == "blocked"
    assert status(reg, "brokenep").status == "blocked"
    with pytest.raises(UnknownComponentError):
        reg.resolve("cosine")


@pytest.mark.parametrize(
    "block",
    ["attnkit-broken", "brokenep", "Attnkit_Broken", "other, attnkit-broken", "x,brokenep,y"],
)
@pytest.mark.parametrize("how", ["argument", "env"])
def test_p1_block_list_skips_a_plugin_without_importing_it(fake, monkeypatch, block, how, quiet):
    module = fake.good("attnkit-good")
    broken = fake.module_name("broken")
    fake.add(
        "attnkit-broken", {broken: "raise RuntimeError('never imported')\n"}, {"brokenep": broken}
    )
    if how == "env":
        monkeypatch.setenv("ATTNKIT_BLOCK_PLUGINS", block)
        reg = Registry()
    else:
        reg = Registry(blocked=block.split(","))
    with quiet:
        resolved = reg.resolve("cosine")
    assert resolved.plugins == {"cosine": "attnkit-good==1.0"}
    assert broken not in sys.modules
    assert module in sys.modules
    assert status(reg, "brokenep").status == "blocked"


def test_p1_blocking_a_good_plugin_hides_its_components(fake, quiet):
    module = fake.good("attnkit-good")
    reg = Registry(blocked=["attnkit-good"])
    with quiet:
        assert "cosine" not in names(reg)
    assert module not in sys.modules
    assert BUILTIN["scorer"] <= names(reg, "scorer")


def test_p1_builtins_cannot_be_blocked(fake, quiet):
    reg = Registry(blocked=["attnkit", "scorers"], autoload=False)
    with quiet:
        assert BUILTIN["scorer"] <= names(reg, "scorer")


# -- P4: requirements on attnkit --------------------------------------------------------------


def test_p4_plugin_requiring_another_attnkit_is_skipped(fake):
    module = fake.good("attnkit-old", requires=("numpy", "attnkit<0.0.1"), version="0.3")
    reg = Registry()
    with pytest.warns(AttnkitPluginWarning) as record:
        reg.load()
    (message,) = plugin_warnings(record)
    assert "attnkit<0.0.1" in message
    assert "attnkit-old" in message and "0.3" in message
    assert attnkit.__version__ in message
    assert module not in sys.modules  # checked before import
    assert status(reg, "good").status == "broken"
    assert "cosine" not in names(reg)


@pytest.mark.parametrize(
    "requirement",
    [
        "attnkit>=0.1",
        "attnkit",
        "attnkit<0.0.1; extra == 'test'",
        "attnkit[extra]>0.0.1",
        "other-package<0.0.1",
    ],
)
def test_p4_plugin_whose_requirement_is_met_loads(fake, requirement, quiet):
    fake.good("attnkit-new", requires=(requirement,))
    reg = Registry()
    with quiet:
        assert "cosine" in names(reg)


def _version_text(parts: list[int], operator: str) -> str:
    if operator == "~=" and len(parts) < 2:
        parts = [*parts, 0]  # ~= needs two release segments
    return ".".join(map(str, parts))


@st.composite
def attnkit_specifiers(draw) -> str:
    """Specifier sets such as ">=0.1,!=0.1.3" over the versions around this attnkit's."""
    clauses = []
    for _ in range(draw(st.integers(1, 3))):
        operator = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "~=", "==="]))
        version = _version_text(draw(st.lists(st.integers(0, 3), min_size=1, max_size=3)), operator)
        if operator in ("==", "!=") and draw(st.booleans()):
            version += ".*"
        clauses.append(operator + version)
    return ",".join(clauses)


@given(attnkit_specifiers())
def test_p4_requirement_check_agrees_with_packaging(specifier):
    """Skipped exactly when packaging says this attnkit does not satisfy the requirement."""
    mine = importlib.metadata.version("attnkit")
    requires = ["numpy>=1", f"attnkit{specifier}", "attnkit<0.0.1; extra == 'old'"]
    real = importlib.metadata.distribution

    def distribution(name):
        if name == "attnkit-hypo":
            return mock.Mock(requires=requires)
        return real(name)

    with mock.patch.object(importlib.metadata, "distribution", distribution):
        problem = requirement_problem("attnkit-hypo")
    expected = SpecifierSet(specifier).contains(mine, prereleases=True)
    assert (problem is None) == expected, (specifier, problem)
    if problem is not None:
        assert f"attnkit{SpecifierSet(specifier)}" in problem.replace(" ", "")
        assert f"this is attnkit {mine}" in problem


def test_p4_plugin_api_constant_is_not_read(fake, quiet):
    """Deliberate deviation from P4: the optional module constant ``ATTNKIT_PLUGIN_API`` is not
    checked. A plugin states what it needs as ``Requires-Dist: attnkit...`` (checked before its
    import, above); a second, in-module number would be read only after running the import it
    was meant to guard."""
    module = fake.module_name("api")
    fake.add(
        "attnkit-api", {module: "ATTNKIT_PLUGIN_API = 999\n" + GOOD_PLUGIN.format(name="cosine")}
    )
    with quiet:
        assert Registry().resolve("cosine").plugins == {"cosine": "attnkit-api==1.0"}


# -- P5: a plugin's scorer that breaks its contract at call time --------------------------------

FLAT_SCORER = """
import attrs, attnkit
from keras import ops

@attrs.frozen
class Flat(attnkit.Scorer):
    name = "flat"

    def score(self, params, query, key):
        return ops.sum(query, axis=-1)  # (B, Tq): not (B, Tq, Tk)

@attnkit.hookimpl
def attnkit_add_components():
    return [Flat]
"""


def test_p5_scorer_returning_the_wrong_shape_names_its_distribution(fake, monkeypatch):
    """On the first call, a ValueError naming the layer, the scorer and the plugin's
    distribution and version (the rest of P5 lives in test_reliability.py and the
    conformance suite)."""
    module = fake.module_name("flat")
    fake.add("attnkit-flat", {module: FLAT_SCORER}, {"flat": module}, version="3.1")
    monkeypatch.setattr(registry_module, "_default", Registry())
    layer = attnkit.AttentionLayer("flat+causal", return_attention=True, name="flatlayer")
    with pytest.raises(attnkit.ComponentError) as info:
        layer(np.zeros((2, 5, 4), "float32"))
    message = str(info.value)
    assert "flatlayer" in message and "'flat'" in message
    assert "attnkit-flat" in message and "3.1" in message
    assert isinstance(info.value, ValueError)


# -- G4: an unknown name that belongs to a broken plugin ----------------------------------------


@pytest.mark.parametrize("spec", ["cosine+causal", "cosin", "dot+cosine"])
def test_g4_unknown_name_mentions_the_broken_plugin(fake, spec):
    broken = fake.module_name("cos")
    fake.add(
        "attnkit-cosine",
        {broken: "raise RuntimeError('cuda missing')\n"},
        {"cosine": broken},
        version="0.9",
    )
    reg = Registry()
    with pytest.warns(AttnkitPluginWarning):
        reg.load()
    with pytest.raises(UnknownComponentError) as info:
        reg.resolve(spec)
    message = str(info.value)
    assert "failed to load" in message
    assert "attnkit-cosine 0.9" in message
    assert "cuda missing" in message


# -- P6: concurrency, re-entrancy, import cost ------------------------------------------------

COUNTING_PLUGIN = (
    """
import time
with open({counter!r}, "a") as f:
    f.write("imported\\n")
time.sleep(0.3)  # widen the window in which other threads ask for the registry
"""
    + GOOD_PLUGIN
)


def test_p6_threads_resolving_at_once_import_the_plugin_once(fake, tmp_path):
    counter = tmp_path / "imports.txt"
    module = fake.module_name("count")
    fake.add("attnkit-count", {module: COUNTING_PLUGIN.format(counter=str(counter), name="cosine")})
    reg = Registry()
    barrier = threading.Barrier(8)
    results, errors = [None] * 8, []

    def work(i):
        try:
            barrier.wait(timeout=30)
            results[i] = reg.resolve("cosine+local3")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert counter.read_text().splitlines() == ["imported"]
    assert all(r is not None and r == results[0] for r in results)
    assert results[0].canonical == "cosine+local3"
    assert {r.plugins["cosine"] for r in results} == {"attnkit-count==1.0"}
    assert [p.entry_point for p in reg.plugins()].count("count") == 1


def test_p6_plugin_that_uses_the_registry_during_import_does_not_deadlock(fake, monkeypatch):
    module = fake.module_name("reentrant")
    source = textwrap.dedent("""
        import attnkit
        # Re-entrant: this runs while the very registry below is loading this module.
        SEEN = attnkit.registry().resolve("dot+causal").canonical
        NAMES = [c.name for c in attnkit.registry().components("scorer")]
    """) + GOOD_PLUGIN.format(name="cosine")
    fake.add("attnkit-reentrant", {module: source})
    reg = Registry()
    monkeypatch.setattr(registry_module, "_default", reg)
    assert attnkit.registry() is reg
    errors = []

    def work():
        try:
            reg.load()
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "loading deadlocked"
    assert errors == []
    plugin = sys.modules[module]
    assert plugin.SEEN == "dot+causal"
    assert BUILTIN["scorer"] <= set(plugin.NAMES)
    assert "cosine" in names(reg)
    assert status(reg, "reentrant").status == "loaded"


def test_p6_plugin_creating_its_own_registry_during_import(fake):
    """A plugin that builds (and loads) another registry while being imported: no recursion."""
    module = fake.module_name("nested")
    source = textwrap.dedent("""
        import attnkit
        INNER = attnkit.Registry(blocked=["attnkit-nested"]).resolve("additive").canonical
    """) + GOOD_PLUGIN.format(name="cosine")
    fake.add("attnkit-nested", {module: source})
    reg = Registry()
    assert reg.resolve("cosine").plugins == {"cosine": "attnkit-nested==1.0"}
    assert sys.modules[module].INNER == "additive"


def test_p6_listing_with_a_broken_plugin_never_raises(fake):
    """Deliberate deviation from P6: there is no metadata-only ``attnkit.plugins.available()``.
    The listing is ``registry().plugins()`` (and ``attnkit list``), which loads every plugin
    first: a status (loaded, broken, blocked, conflict) is only known after the import. Outside
    strict mode it never raises: a broken plugin is listed with its reason."""
    broken = fake.module_name("broken")
    fake.add(
        "attnkit-broken",
        {broken: "raise RuntimeError('no gpu')\n"},
        {"brokenep": broken},
        version="2.0",
    )
    fake.good("attnkit-good")
    reg = Registry()
    with pytest.warns(AttnkitPluginWarning):
        listed = {p.entry_point: p for p in reg.plugins()}
    assert listed["brokenep"].status == "broken"
    assert "RuntimeError: no gpu" in listed["brokenep"].error
    assert (listed["brokenep"].distribution, listed["brokenep"].version) == (
        "attnkit-broken",
        "2.0",
    )
    assert listed["good"].status == "loaded" and listed["good"].components == ("cosine",)


@pytest.mark.slow
def test_p6_import_attnkit_imports_no_component_module(fake):
    module = fake.module_name("probe")
    root = fake.add("attnkit-probe", {module: GOOD_PLUGIN.format(name="cosine")}, prepend=False)
    script = textwrap.dedent(f"""
        import sys
        import attnkit
        watched = ("attnkit.scorers", "attnkit.masks", "attnkit.poolings", {module!r})
        print([m for m in sys.modules if m.startswith(watched)])
        attnkit.registry().components()
        print(sorted(m for m in sys.modules if m.startswith(watched)))
    """)
    env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
    for var in (
        "ATTNKIT_DISABLE_PLUGIN_AUTOLOAD",
        "ATTNKIT_BLOCK_PLUGINS",
        "ATTNKIT_STRICT_PLUGINS",
    ):
        env.pop(var, None)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    before, after = done.stdout.strip().splitlines()[-2:]
    assert before == "[]"
    # The same check sees them once the registry has loaded: it can fail.
    builtins = {"attnkit.masks", "attnkit.poolings", "attnkit.scorers"}
    loaded = eval(after)  # noqa: S307 - the list of module names printed above
    assert module in loaded and builtins <= set(loaded), after


# -- S4: a plugin taking attnkit's name in Keras' serializable registry -------------------------

HIJACKING_PLUGIN = (
    GOOD_PLUGIN
    + """
import keras

@keras.saving.register_keras_serializable(package="attnkit", name="AttentionLayer")
class Hijack(keras.layers.Layer):
    pass
"""
)


def test_s4_plugin_taking_attnkits_keras_name_is_rejected(fake, monkeypatch):
    """Keras' register_keras_serializable overwrites silently, and a file saved with
    'attnkit>AttentionLayer' would then load as the plugin's class. The registry compares
    attnkit's Keras names before and after each plugin import: the plugin is rejected as a
    whole (PluginConflictError in strict mode) and attnkit's entry put back."""
    custom = keras.saving.get_custom_objects()
    module = fake.module_name("hijack")
    fake.add(
        "attnkit-hijack",
        {module: HIJACKING_PLUGIN.format(name="hijacked")},
        {"hijack": module},
        version="0.1",
    )
    fake.good("attnkit-good", component="other")
    try:
        reg = Registry()
        with pytest.warns(AttnkitPluginWarning) as record:
            reg.load()
        (message,) = plugin_warnings(record)
        assert "attnkit-hijack 0.1" in message and "attnkit>AttentionLayer" in message
        assert "register_keras_serializable" in message  # the fix
        assert custom["attnkit>AttentionLayer"] is attnkit.AttentionLayer
        assert status(reg, "hijack").status == "broken"
        assert "hijacked" not in names(reg)
        assert reg.resolve("other").plugins == {"other": "attnkit-good==1.0"}

        sys.modules.pop(module)  # imported again, it registers again
        monkeypatch.setenv("ATTNKIT_STRICT_PLUGINS", "1")
        with pytest.raises(PluginConflictError, match="attnkit-hijack"):
            Registry().load()
        assert custom["attnkit>AttentionLayer"] is attnkit.AttentionLayer
    finally:
        custom["attnkit>AttentionLayer"] = attnkit.AttentionLayer
