"""Fake plugin distributions for the tests: a ``<name>-<version>.dist-info`` folder with
``METADATA`` and ``entry_points.txt`` under a tmp folder, and the plugin module beside it.

Used by tests/test_registry.py (plugin loading) and tests/test_loading_safety.py (saving a
layer that uses a plugin). Module names are unique per test so that ``sys.modules`` cannot carry
a plugin from one test to the next.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

#: A correct plugin module with one scorer; ``{name}`` is the component name.
GOOD_PLUGIN = """
import attrs, attnkit
from keras import ops

@attrs.frozen
class Cosine(attnkit.Scorer):
    name = "{name}"
    temperature: float = 1.0

    def score(self, params, query, key):
        qn = query / ops.norm(query, axis=-1, keepdims=True)
        kn = key / ops.norm(key, axis=-1, keepdims=True)
        return ops.matmul(qn, ops.swapaxes(kn, -1, -2)) / self.temperature

@attnkit.hookimpl
def attnkit_add_components():
    return [Cosine]
"""

#: The environment switches a test must not inherit from the shell that runs it.
PLUGIN_ENV = (
    "ATTNKIT_STRICT_PLUGINS",
    "ATTNKIT_DISABLE_PLUGIN_AUTOLOAD",
    "ATTNKIT_BLOCK_PLUGINS",
)


class FakeDists:
    """Writes fake distributions under a tmp folder and puts them on sys.path."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp_path = tmp_path
        self.monkeypatch = monkeypatch
        self.modules: list[str] = []
        self.tag = uuid.uuid4().hex[:10]

    def module_name(self, stem: str) -> str:
        name = f"attnkit_fake_{stem}_{self.tag}"
        self.modules.append(name)
        return name

    def add(
        self,
        dist: str,
        modules: dict[str, str],
        entry_points: dict[str, str] | None = None,
        *,
        version: str = "1.0",
        requires: tuple[str, ...] = (),
        folder: str | None = None,
        prepend: bool = True,
    ) -> Path:
        """One distribution named ``dist``; ``entry_points`` default to one per module.

        Returns the folder that holds it (prepended to sys.path unless ``prepend`` is False).
        """
        root = self.tmp_path / (folder or dist)
        root.mkdir(exist_ok=True)
        info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        metadata = f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
        metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
        (info / "METADATA").write_text(metadata)
        if entry_points is None:
            entry_points = {
                module.rsplit("_", 1)[0].replace("attnkit_fake_", ""): module for module in modules
            }
        (info / "entry_points.txt").write_text(
            "[attnkit]\n" + "".join(f"{ep} = {value}\n" for ep, value in entry_points.items())
        )
        for module, source in modules.items():
            (root / f"{module}.py").write_text(textwrap.dedent(source))
        if prepend:
            self.monkeypatch.syspath_prepend(str(root))
        return root

    def good(self, dist: str, component: str = "cosine", *, stem: str = "good", **kwargs) -> str:
        """A distribution with one good plugin module; returns the module name."""
        module = self.module_name(stem)
        self.add(dist, {module: GOOD_PLUGIN.format(name=component)}, **kwargs)
        return module

    def cleanup(self) -> None:
        for name in self.modules:
            sys.modules.pop(name, None)


def only_attnkit_and(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the registry see attnkit's own entry points and the fakes under ``tmp_path`` only.

    Real third-party plugins installed in the environment (the example plugins are) would
    change what the tests count, and one of the fakes is also called cosine.
    """
    real = importlib.metadata.entry_points

    def isolated(**selection):
        return importlib.metadata.EntryPoints(
            ep
            for ep in real(**selection)
            if ep.dist is None
            or ep.dist.metadata["Name"] == "attnkit"
            or str(tmp_path) in str(getattr(ep.dist, "_path", ""))
        )

    monkeypatch.setattr(importlib.metadata, "entry_points", isolated)


def clean_plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in PLUGIN_ENV:
        monkeypatch.delenv(var, raising=False)
