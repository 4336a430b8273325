"""No import cycles between the modules of xds/ and capabilities/: layers are read top-down, and a cycle
means a half-initialised module on one of its import orders.

The graph holds the imports that run when a module is first imported: module level, including those under
`if` / `try` / a class body. Function-local imports run later (they are how a lazy name is loaded) and
imports under `if TYPE_CHECKING:` never run; both are skipped. A second test adds the function-local ones:
an import moved into a function only to dodge a cycle still runs back up a layer, so it fails too (a lazy
import of a heavier module further down is fine: it makes no cycle).

Edges: `import a.b.c` and `from a.b.c import x` depend on a.b.c; `from a.b import c` on a.b.c when c is a
module, else on a.b. Importing a.b.c also runs a/__init__ and a/b/__init__: the target's packages are
edges too, except the importer's own (they are already initialising when it runs)."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("xds", "capabilities")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "__pycache__" not in path.parts:
                found[_module_name(path)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _import_time_nodes(
    body: list[ast.stmt], deferred: bool = False, annotations: bool = False
) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module body runs; with deferred, those inside functions too; with
    annotations, the TYPE_CHECKING-only ones too."""
    found: list[ast.Import | ast.ImportFrom] = []
    for stmt in body:
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            found.append(stmt)
        elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            if deferred:
                found += _import_time_nodes(stmt.body, deferred, annotations)
        elif isinstance(stmt, ast.If):
            if annotations or not _is_type_checking(stmt.test):
                found += _import_time_nodes(stmt.body, deferred, annotations)
            found += _import_time_nodes(stmt.orelse, deferred, annotations)
        elif isinstance(stmt, ast.Try | ast.TryStar):
            for block in (stmt.body, stmt.orelse, stmt.finalbody, *(h.body for h in stmt.handlers)):
                found += _import_time_nodes(block, deferred, annotations)
        elif isinstance(stmt, ast.ClassDef | ast.With | ast.AsyncWith | ast.For | ast.AsyncFor | ast.While):
            found += _import_time_nodes(stmt.body, deferred, annotations)
            found += _import_time_nodes(getattr(stmt, "orelse", []), deferred, annotations)
    return found


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _targets(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, known: set[str]) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    base = node.module or ""
    if node.level:
        anchor = importer.split(".") if is_package else importer.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
    targets = set()
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        targets.add(submodule if submodule in known else base)
    return targets


def import_graph(deferred: bool = False, annotations: bool = False) -> nx.DiGraph:
    modules = _modules()
    known = set(modules)
    graph = nx.DiGraph()
    graph.add_nodes_from(known)
    for importer, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        own = set(_ancestors(importer)) | {importer}
        for node in _import_time_nodes(tree.body, deferred, annotations):
            for target in _targets(node, importer, path.name == "__init__.py", known):
                for module in [*_ancestors(target), target]:
                    if module in known and module not in own:
                        graph.add_edge(importer, module, line=node.lineno)
    return graph


def _describe(graph: nx.DiGraph, cycle: list[str]) -> str:
    hops = zip(cycle, [*cycle[1:], cycle[0]], strict=True)
    return " -> ".join(f"{a} (line {graph.edges[a, b]['line']})" for a, b in hops) + f" -> {cycle[0]}"


def test_the_walk_sees_module_level_imports_only() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import xds.a\n"
        "if TYPE_CHECKING:\n    import xds.typing_only\n"
        "else:\n    import xds.b\n"
        "try:\n    from xds import c\nexcept ImportError:\n    import xds.d\n"
        "class K:\n    import xds.e\n"
        "def f():\n    import xds.local\n"
    )
    names = set()
    for node in _import_time_nodes(ast.parse(source).body):
        names |= _targets(node, "xds.m", False, {"xds.c"})
    assert names == {"typing", "xds.a", "xds.b", "xds.c", "xds.d", "xds.e"}
    deferred = set()
    for node in _import_time_nodes(ast.parse(source).body, deferred=True):
        deferred |= _targets(node, "xds.m", False, {"xds.c"})
    assert deferred == names | {"xds.local"}


def test_a_package_imported_by_name_is_an_edge_to_its_init() -> None:
    # `from xds.translate import X` where X is a name of the package's __init__ runs that __init__
    node = ast.parse("from xds.translate import SnapshotBuilder").body[0]
    assert isinstance(node, ast.ImportFrom)
    assert _targets(node, "xds.translate.route", False, {"xds.translate"}) == {"xds.translate"}


def _one_cycle(graph: nx.DiGraph, component: set[str]) -> list[str]:
    return [edge[0] for edge in nx.find_cycle(graph.subgraph(component))]


def _cycles(graph: nx.DiGraph) -> str:
    tangles = [c for c in nx.strongly_connected_components(graph) if len(c) > 1]
    return "\n".join(f"{sorted(c)}\n  e.g. {_describe(graph, _one_cycle(graph, c))}" for c in tangles)


def test_no_import_cycles_in_xds_and_capabilities() -> None:
    graph = import_graph()
    assert graph.number_of_edges() > 500, "the walk found too few imports to be trusted"
    cycles = _cycles(graph)
    assert not cycles, "import cycles (move the shared piece into its own module):\n" + cycles


def test_no_function_local_import_runs_back_up() -> None:
    graph = import_graph(deferred=True)
    cycles = _cycles(graph)
    assert not cycles, "cycles through function-local imports (move the shared piece instead):\n" + cycles


def test_the_model_ir_has_no_cycle_even_in_annotations() -> None:
    # the kinds (resources.py) are built from their parts (meta, traffic, security), never the reverse; a
    # part that names a kind, even for a type hint only, puts the two back in one tangle
    graph = import_graph(deferred=True, annotations=True)
    ir = [m for m in graph if m.startswith("xds.model.")]  # not the package: its lazy names list every part
    cycles = _cycles(graph.subgraph(ir))
    assert not cycles, "cycles among the model's modules:\n" + cycles
