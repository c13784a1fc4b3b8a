"""Check that galaxalign's imports point one way: no cycles between modules or floors, none upward.

Every module under the package is parsed with `ast` (nothing is imported or run), and every
`import`/`from ... import` is an edge: at module level, inside functions (lazy imports) and
under `if TYPE_CHECKING:` alike. TYPE_CHECKING and lazy imports count, because a cycle hidden in
a function or from the interpreter is still a knot a reader has to untie; only imports built from
strings (`importlib.import_module(name)`) are invisible here. `from pkg import name` is an edge to
`pkg.name` when that is a module, else to `pkg` (its `__init__`).

A module's floor is its first component under the package (`galaxalign.data.loader` -> `data`;
the package's own `__init__` is the floor `galaxalign`). Floors are ranked by FLOORS, lowest
first; a module may import its own floor, a floor of the same rank, or lower (`errors`, `io`
and the other leaves are rank 0). The floor graph must have no cycles either, same rank or not.

    python tools/import_graph.py [--root src/galaxalign] [--graph]

Prints every cycle (each strongly connected component with one shortest cycle through it) and
every upward import, and exits 1 if there is any, else 0.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Lowest first: a floor may import only floors of its rank or lower. The report sits below the
# jobs because the demo job ends in one; `galaxalign` is the package's own __init__ (the public
# API, imported lazily from strings), on the top floor beside the CLI and the web app.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("_version", "config", "errors", "io", "devices", "progress", "run_config"),
    ("taxonomy",),
    ("morphology", "symbols", "synth", "data"),
    ("models",),
    ("runs",),
    ("training",),
    ("evaluation", "search"),
    ("report",),
    ("jobs",),
    ("cli", "web", "__main__", "galaxalign"),
)


@dataclass(frozen=True)
class Edge:
    """One import statement: `source` imports `target` at `line`; `kind` is where it sits."""

    source: str
    target: str
    line: int
    kind: str  # "top", "lazy" (inside a function) or "type-checking"


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package under `root` (the package folder), by dotted name."""
    out: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join([package, *parts])] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> Iterable[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import node with where it sits, walking into functions and TYPE_CHECKING blocks."""
    stack: list[tuple[ast.AST, str]] = [(tree, "top")]
    while stack:
        node, kind = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, kind
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                stack.append((child, "type-checking" if kind == "type-checking" else "lazy"))
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.body:
                    stack.append((sub, "type-checking"))
                    if isinstance(sub, ast.Import | ast.ImportFrom):
                        yield sub, "type-checking"
                for sub in child.orelse:
                    stack.append((sub, kind))
                    if isinstance(sub, ast.Import | ast.ImportFrom):
                        yield sub, kind
            else:
                stack.append((child, kind))


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name a `from` import names, relative imports resolved against `module`."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_edges(root: Path, package: str) -> list[Edge]:
    """Every import from a module of the package to another of its modules."""
    modules = module_names(root, package)
    edges: list[Edge] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node, kind in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(name, is_package, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in dict.fromkeys(targets):
                while target and target not in modules and "." in target:  # `import a.b.c` of a non-module c
                    target = target.rsplit(".", 1)[0]
                if target in modules and target != name:
                    edges.append(Edge(name, target, node.lineno, kind))
    return edges


def floor_of(module: str, package: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else package


def floor_edges(edges: Iterable[Edge], package: str) -> list[Edge]:
    """The module edges that cross floors, relabelled floor to floor (one edge per import)."""
    out = []
    for e in edges:
        a, b = floor_of(e.source, package), floor_of(e.target, package)
        if a != b:
            out.append(Edge(a, b, e.line, f"{e.kind}: {e.source} -> {e.target}"))
    return out


def strongly_connected(nodes: Iterable[str], edges: Iterable[Edge]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one node, each sorted."""
    graph: dict[str, set[str]] = {n: set() for n in nodes}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                out.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(out)


def shortest_cycle(component: Sequence[str], edges: Iterable[Edge]) -> list[Edge]:
    """A shortest cycle through the component's first node, as the edges that make it."""
    inside = set(component)
    by_source: dict[str, list[Edge]] = {}
    for e in edges:
        if e.source in inside and e.target in inside:
            by_source.setdefault(e.source, []).append(e)
    start = component[0]
    came: dict[str, Edge] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for e in sorted(by_source.get(v, []), key=lambda e: (e.target, e.line)):
            if e.target == start:
                path = [e]
                while path[0].source != start:
                    path.insert(0, came[path[0].source])
                return path
            if e.target not in came:
                came[e.target] = e
                queue.append(e.target)
    return []


def floor_ranks(floors: Sequence[Sequence[str]]) -> dict[str, int]:
    return {name: rank for rank, names in enumerate(floors) for name in names}


def upward_imports(edges: Iterable[Edge], ranks: Mapping[str, int], package: str) -> list[tuple[Edge, str]]:
    """Imports of a higher floor (or of a floor FLOORS does not declare), with the reason."""
    out = []
    for e in edges:
        a, b = floor_of(e.source, package), floor_of(e.target, package)
        if a == b:
            continue
        if a not in ranks or b not in ranks:
            out.append((e, f"floor {a if a not in ranks else b!r} is not declared in FLOORS"))
        elif ranks[b] > ranks[a]:
            out.append((e, f"{a} (rank {ranks[a]}) imports {b} (rank {ranks[b]})"))
    return out


def report(root: Path, package: str, floors: Sequence[Sequence[str]] = FLOORS, graph: bool = False) -> list[str]:
    """The problems found, one line each (empty when the imports point one way)."""
    edges = import_edges(root, package)
    modules = module_names(root, package)
    lines: list[str] = []
    for component in strongly_connected(modules, edges):
        path = " -> ".join(f"{e.source} ({e.kind}, line {e.line})" for e in shortest_cycle(component, edges))
        lines.append(f"module cycle among {', '.join(component)}: {path} -> {component[0]}")
    between = floor_edges(edges, package)
    floor_names = {floor_of(m, package) for m in modules}
    for component in strongly_connected(floor_names, between):
        path = " -> ".join(f"{e.source} [{e.kind}, line {e.line}]" for e in shortest_cycle(component, between))
        lines.append(f"floor cycle among {', '.join(component)}: {path} -> {component[0]}")
    for e, why in upward_imports(edges, floor_ranks(floors), package):
        lines.append(f"upward import: {e.source} -> {e.target} ({e.kind}, line {e.line}): {why}")
    if graph:
        pairs = sorted({(e.source, e.target) for e in between})
        print("floor graph:\n" + "\n".join(f"  {a} -> {b}" for a, b in pairs))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1] / "src" / "galaxalign")
    parser.add_argument("--graph", action="store_true", help="also print the floor graph")
    args = parser.parse_args(argv)
    if not (args.root / "__init__.py").is_file():
        print(f"{args.root}: not a package folder (no __init__.py)", file=sys.stderr)
        return 2
    problems = report(args.root, args.root.name, graph=args.graph)
    for line in problems:
        print(line)
    modules = len(module_names(args.root, args.root.name))
    print(f"{args.root.name}: {modules} modules, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
