"""The package's import structure, read from the source with ``ast`` (nothing is imported).

Every import statement counts, at module level, inside a function or under ``if TYPE_CHECKING``,
relative ones resolved: an import inside a function still ties the two modules together, it
only hides the tie.
``from pkg import name`` is an import of the submodule ``pkg.name`` when that module exists,
otherwise of ``pkg`` itself. Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``;
those implicit parent imports are not edges, so a package ``__init__`` that imports its own
submodules is no cycle.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "glean_sr"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / PACKAGE

#: ``glean_sr.models`` holds network definitions only: these layers sit above it.
MODELS = f"{PACKAGE}.models"
ABOVE_MODELS = [
    f"{PACKAGE}.weights",
    f"{PACKAGE}.inference",
    f"{PACKAGE}.training",
    f"{PACKAGE}.evaluation",
    f"{PACKAGE}.commands",
    f"{PACKAGE}.analysis",
]


@dataclass(frozen=True)
class Edge:
    """``importer`` imports ``target`` (a module name) at ``line``; ``names`` are the imported
    names when the statement was ``from target import ...``; ``alias`` is the local name bound
    to the module ``target`` itself, if any."""

    importer: str
    target: str
    line: int
    names: tuple[str, ...] = ()
    alias: str | None = None


@dataclass
class Package:
    """Module name -> source text, and which module names are packages (have submodules)."""

    sources: dict[str, str]
    packages: set[str]
    paths: dict[str, str]

    @classmethod
    def from_directory(cls, root: Path, name: str) -> Package:
        sources, packages, paths = {}, {name}, {}
        for path in sorted(root.rglob("*.py")):
            parts = [name, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            module = ".".join(parts)
            sources[module] = path.read_text(encoding="utf-8")
            paths[module] = str(path.relative_to(root.parent))
        for directory in root.rglob("*"):
            if directory.is_dir() and any(directory.glob("*.py")):
                packages.add(".".join([name, *directory.relative_to(root).parts]))
        return cls(sources, packages, paths)

    def where(self, module: str, line: int) -> str:
        return f"{self.paths.get(module, module)}:{line}"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def imports_of(module: str, source: str, pkg: Package) -> list[Edge]:
    """Every import of a ``pkg`` module by ``module``, wherever the statement stands."""
    root = next(iter(sorted(pkg.packages, key=len)))
    own_package = module if module in pkg.packages else module.rpartition(".")[0]
    edges = []
    for node in ast.walk(ast.parse(source, filename=module)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == root or alias.name.startswith(root + "."):
                    edges.append(Edge(module, alias.name, node.lineno, alias=alias.asname))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = own_package.split(".")
                if node.level - 1 >= len(base):
                    raise ValueError(f"{module}:{node.lineno}: relative import beyond {root}")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not (target == root or target.startswith(root + ".")):
                continue
            plain = []
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in pkg.sources or sub in pkg.packages:
                    edges.append(Edge(module, sub, node.lineno, alias=alias.asname or alias.name))
                else:
                    plain.append(alias.name)
            if plain:
                edges.append(Edge(module, target, node.lineno, tuple(plain)))
    return edges


def private_attribute_uses(module: str, source: str, pkg: Package) -> list[Edge]:
    """``other._name`` where ``other`` is a name bound to another package module by an import."""
    bound = {e.alias: e.target for e in imports_of(module, source, pkg) if e.alias}
    found = []
    for node in ast.walk(ast.parse(source, filename=module)):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in bound
            and bound[node.value.id] != module
            and _is_private(node.attr)
        ):
            found.append(Edge(module, bound[node.value.id], node.lineno, (node.attr,)))
    return found


def import_graph(pkg: Package) -> tuple[dict[str, set[str]], list[Edge]]:
    """Module -> the package modules it imports (only modules that exist), and every edge."""
    edges = [e for m, src in pkg.sources.items() for e in imports_of(m, src, pkg)]
    graph: dict[str, set[str]] = {m: set() for m in pkg.sources}
    for e in edges:
        if e.target in pkg.sources and e.target != e.importer:
            graph[e.importer].add(e.target)
    return graph, edges


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def path_between(graph: Mapping[str, Iterable[str]], start: str, goal) -> list[str] | None:
    """A shortest import chain ``start -> ... -> goal`` (breadth first), or None; ``goal`` is a
    module name or a predicate on module names."""
    is_goal = goal if callable(goal) else goal.__eq__
    previous: dict[str, str | None] = {start: None}
    queue = [start]
    for v in queue:
        for w in sorted(graph.get(v, ())):
            if w in previous:
                continue
            previous[w] = v
            if is_goal(w):
                chain = [w]
                while previous[chain[-1]] is not None:
                    chain.append(previous[chain[-1]])
                return chain[::-1]
            queue.append(w)
    return None


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _edge_lines(pkg: Package, edges: list[Edge], chain: list[str]) -> str:
    lines = []
    for a, b in itertools.pairwise(chain):
        line = min(e.line for e in edges if e.importer == a and e.target == b)
        lines.append(f"    {a} -> {b}  ({pkg.where(a, line)})")
    return "\n".join(lines)


def layer_violations(pkg: Package, graph, edges) -> list[str]:
    """Each import by a ``glean_sr.models`` module that leaves the models for a layer above
    them, directly or through a module outside ``models`` (with the chain of imports)."""
    found = []
    for e in edges:
        if not _within(e.importer, MODELS) or _within(e.target, MODELS):
            continue
        where = f"{pkg.where(e.importer, e.line)}: {e.importer} imports {e.target}"
        if any(_within(e.target, layer) for layer in ABOVE_MODELS):
            found.append(where)
            continue
        above = lambda m: any(_within(m, layer) for layer in ABOVE_MODELS)  # noqa: E731
        chain = path_between(graph, e.target, above)
        if chain is not None:
            found.append(f"{where}, which reaches {chain[-1]}:\n{_edge_lines(pkg, edges, chain)}")
    return sorted(set(found))


def private_imports(pkg: Package, edges) -> list[str]:
    found = []
    for e in edges:
        for name in e.names:
            if _is_private(name) and e.target != e.importer:
                found.append(
                    f"{pkg.where(e.importer, e.line)}: {e.importer} uses {e.target}.{name}"
                )
    for module, source in pkg.sources.items():
        for e in private_attribute_uses(module, source, pkg):
            found.append(
                f"{pkg.where(e.importer, e.line)}: {e.importer} uses {e.target}.{e.names[0]}"
            )
    return sorted(set(found))


@pytest.fixture(scope="module")
def package() -> Package:
    return Package.from_directory(PACKAGE_DIR, PACKAGE)


@pytest.fixture(scope="module")
def graph_and_edges(package):
    return import_graph(package)


# --- the checker itself, on a small package written for it ---------------------------------

TOY = {
    "toy": "from . import a\n",
    "toy.a": "from .b import helper\n\ndef f():\n    from toy.sub import c\n    return c\n",
    "toy.b": "import os\n\ndef helper():\n    from . import a\n    return a\n",
    "toy.sub": "from .c import _hidden, visible\n",
    "toy.sub.c": "from ..a import f\nimport toy.b as bee\nvisible = bee._secret\n",
}


def _toy() -> Package:
    return Package(dict(TOY), {"toy", "toy.sub"}, {m: m for m in TOY})


def test_checker_resolves_relative_nested_and_submodule_imports():
    pkg = _toy()
    graph, edges = import_graph(pkg)
    assert graph == {
        "toy": {"toy.a"},  # `from . import a` is the submodule, not the package
        "toy.a": {"toy.b", "toy.sub.c"},  # the import inside f() counts
        "toy.b": {"toy.a"},
        "toy.sub": {"toy.sub.c"},
        "toy.sub.c": {"toy.a", "toy.b"},  # `..a` from toy.sub.c is toy.a
    }
    assert Edge("toy.sub", "toy.sub.c", 1, ("_hidden", "visible")) in edges


def test_checker_finds_cycles_and_private_names():
    pkg = _toy()
    graph, edges = import_graph(pkg)
    assert cycles(graph) == [["toy.a", "toy.b", "toy.sub.c"]]
    assert cycles({"p": {"p.x"}, "p.x": set()}) == []
    assert path_between(graph, "toy", "toy.sub.c") == ["toy", "toy.a", "toy.sub.c"]
    assert private_imports(pkg, edges) == [
        "toy.sub.c:3: toy.sub.c uses toy.b._secret",
        "toy.sub:1: toy.sub uses toy.sub.c._hidden",
    ]


def test_checker_finds_models_reaching_a_layer_above_through_another_module():
    sources = {
        "glean_sr": "",
        "glean_sr.models": "",
        "glean_sr.models.a": "def f():\n    from .. import helper\n",
        "glean_sr.models.b": "from glean_sr.weights.w import load\n",
        "glean_sr.helper": "from glean_sr.weights import w\n",
        "glean_sr.weights.w": "from glean_sr.models import a\n",
    }
    pkg = Package(sources, {"glean_sr", "glean_sr.models", "glean_sr.weights"}, {})
    graph, edges = import_graph(pkg)
    assert layer_violations(pkg, graph, edges) == [
        "glean_sr.models.a:2: glean_sr.models.a imports glean_sr.helper, which reaches "
        "glean_sr.weights.w:\n    glean_sr.helper -> glean_sr.weights.w  (glean_sr.helper:1)",
        "glean_sr.models.b:1: glean_sr.models.b imports glean_sr.weights.w",
    ]
    assert cycles(graph) == [["glean_sr.helper", "glean_sr.models.a", "glean_sr.weights.w"]]


def test_the_walk_sees_the_whole_package(package, graph_and_edges):
    graph, edges = graph_and_edges
    assert {f"{PACKAGE}.models.glean", f"{PACKAGE}.inference.upscaler", f"{PACKAGE}.cli"} <= set(
        package.sources
    )
    assert len(edges) > 100
    assert f"{PACKAGE}.config" in graph[f"{PACKAGE}.models.glean"]


# --- the package --------------------------------------------------------------------------


def test_no_import_cycle(package, graph_and_edges):
    graph, edges = graph_and_edges
    found = cycles(graph)
    report = []
    for component in found:
        start = component[0]
        back = [path_between(graph, w, start) for w in sorted(graph[start]) if w in component]
        loop = [start, *min((c for c in back if c is not None), key=len)]
        report.append(
            f"{len(component)} modules import each other: {', '.join(component)}\n"
            f"  for example:\n{_edge_lines(package, edges, loop)}"
        )
    assert not found, "import cycles among glean_sr's modules:\n" + "\n".join(report)


def test_models_never_import_the_layers_above_them(package, graph_and_edges):
    graph, edges = graph_and_edges
    found = layer_violations(package, graph, edges)
    assert not found, (
        f"{MODELS} must not import {', '.join(ABOVE_MODELS)}, directly or through another "
        "module:\n" + "\n".join(found)
    )


def test_no_module_imports_another_modules_private_names(package, graph_and_edges):
    _, edges = graph_and_edges
    found = private_imports(package, edges)
    assert not found, "underscore names used across glean_sr modules:\n" + "\n".join(found)
