"""The proxy package's modules import each other one way only (no import cycle), and each imports alone.

The graph is read from the source (ast), so it holds every import a reader sees:
module level, inside functions, and under `TYPE_CHECKING`. The package
`interceptors/` imports its modules with pkgutil, which no `import` statement
shows: that edge (package -> each module) is added by hand. Importing a module
also runs its parent packages' `__init__`; those implicit edges are left out,
as import-cycle checkers do (a package's `__init__` re-exports its modules).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest_nemo_eval.adapters as adapters

ROOT = Path(adapters.__file__).parent
PACKAGE = adapters.__name__


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name`'s source imports (the nearest known module of each dotted name)."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()

    def add(dotted: str) -> None:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        if dotted and dotted != name:
            found.add(dotted)

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:  # `from . import interceptors` names a module; `from .x import y` a name in x
                add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(name, path, known) for name, path in modules.items()}
    interceptors = f"{PACKAGE}.interceptors"
    graph[interceptors] |= {m for m in known if m.startswith(interceptors + ".") and not m.rpartition(".")[2].startswith("_")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_graph_sees_the_edges_that_matter():
    """The checker is not vacuous: it finds the known one-way edges and a cycle when there is one."""
    graph = import_graph()
    registry, config, cache = (f"{PACKAGE}.{m}" for m in ("registry", "config", "interceptors.cache"))
    assert registry in graph[cache] and registry in graph[config]
    assert f"{PACKAGE}.interceptors" in graph[f"{PACKAGE}.builtins"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_proxy_package_has_no_import_cycle():
    graph = import_graph()
    cycle = find_cycle({name: {m for m in edges if m != PACKAGE} for name, edges in graph.items() if name != PACKAGE})
    assert cycle is None, "import cycle: " + " -> ".join(m.removeprefix(PACKAGE + ".") for m in cycle)


def test_the_registry_imports_no_other_part_of_the_chain():
    """registry.py is the leaf every interceptor imports: it names no interceptor, config or chain module."""
    allowed = {f"{PACKAGE}.{m}" for m in ("exchange", "stats", "upstream", "response_cache")}
    assert import_graph()[f"{PACKAGE}.registry"] <= allowed


def test_each_module_imports_first_in_a_fresh_interpreter():
    """Import order cannot matter: each module, imported first with nothing of the package loaded, works."""
    names = sorted(n for n in _modules() if not n.endswith("__main__"))
    code = textwrap.dedent(f"""
        import importlib, sys
        failed = []
        for name in {names!r}:
            for loaded in [m for m in sys.modules if m == 'pytest_nemo_eval' or m.startswith('pytest_nemo_eval.')]:
                del sys.modules[loaded]
            try:
                importlib.import_module(name)
            except Exception as exc:
                failed.append(f"{{name}}: {{exc!r}}")
        print("\\n".join(failed))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
