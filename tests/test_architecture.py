"""The package's shape: no import cycles, the core never imports a tool, backends are imported in
one module only, modules stay small, and every document link stays inside the repository.

Imports are read from the source with ``ast`` (inside functions too), so a lazy import that
closes a cycle counts as much as one at the top of a module.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "attnkit"
#: Modules that use the core and are never imported by it.
TOOLS = (
    "attnkit.cli",
    "attnkit.cli_arguments",
    "attnkit.explain",
    "attnkit.bench",
    "attnkit.inspection",
    "attnkit.demo",
)
TOOL_PACKAGES = ("attnkit.viz", "attnkit.conformance")
#: Longest module, in lines.
MODULE_LINES = 400
#: Longest function body, in lines (docstring excluded).
FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str) -> set[str]:
    """The attnkit modules ``name`` imports anywhere in its source."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name) for name in MODULES}


def _is_tool(name: str) -> bool:
    return name in TOOLS or any(name == p or name.startswith(p + ".") for p in TOOL_PACKAGES)


def test_no_import_cycles():
    """Tarjan's strongly connected components of the import graph all have one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in GRAPH[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in GRAPH:
        if node not in index:
            visit(node)
    assert not cycles, f"modules importing each other (directly or around a loop): {cycles}"


def test_the_core_never_imports_a_tool():
    """Only the tools, and ``attnkit/__init__``'s lazy public names, reach a tool."""
    reached = {
        (name, other)
        for name, others in GRAPH.items()
        for other in others
        if _is_tool(other) and not _is_tool(name) and name != "attnkit"
    }
    assert not reached, f"core modules importing tools: {sorted(reached)}"


def test_plans_and_components_know_no_layer():
    """Data flows one way: the layer uses the plans and the components, never the reverse."""
    lower = [
        name
        for name in GRAPH
        if name.startswith(("attnkit.plans", "attnkit.scorers"))
        or name in ("attnkit.masks", "attnkit.poolings", "attnkit.components")
    ]
    offenders = {name: GRAPH[name] & {"attnkit.layer", "attnkit"} for name in lower}
    assert not any(offenders.values()), offenders


def test_only_the_backend_module_imports_a_backend():
    """TensorFlow, JAX and PyTorch are imported by ``attnkit.backend`` alone."""
    pattern = re.compile(r"^\s*(import|from)\s+(tensorflow|jax|jaxlib|torch)\b", re.M)
    found = [
        name
        for name, path in MODULES.items()
        if name != "attnkit.backend" and pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert not found, f"modules importing a backend directly: {found}"


def test_modules_and_functions_are_small():
    long_modules = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MODULE_LINES
    }
    assert not long_modules, f"modules over {MODULE_LINES} lines: {long_modules}"
    long_functions = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = node.body[0]
                documented = isinstance(first, ast.Expr) and isinstance(
                    getattr(first, "value", None), ast.Constant
                )
                start = first.end_lineno + 1 if documented else first.lineno
                if node.end_lineno - start + 1 > FUNCTION_LINES:
                    long_functions.append(f"{name}.{node.name}")
    assert not long_functions, f"functions over {FUNCTION_LINES} lines: {long_functions}"


#: A relative link in a Markdown file: ``[text](target)``, without a scheme or a bare anchor.
LINK = re.compile(r"\]\((?![a-z]+:|#)([^)\s]+)\)")


def _tracked_markdown() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    return [ROOT / f for f in listed if (ROOT / f).is_file()]


def test_every_document_link_stays_inside_the_repository():
    """A reader who clones attnkit can follow every relative link its documents hold: each
    names a file or folder of the repository."""
    broken = []
    for path in _tracked_markdown():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for target in LINK.findall(line):
                resolved = (path.parent / target.split("#")[0]).resolve()
                if not resolved.is_relative_to(ROOT.resolve()) or not resolved.exists():
                    broken.append(f"{path.relative_to(ROOT)}:{number}: {target}")
    assert not broken, "\n".join(broken[:40])
