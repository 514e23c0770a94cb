"""The code's shape: imports point down the layers, no import cycles, short functions, small files.

These limits keep the package easy to change (see docs/design.md, "Layers"). The import graph
counts imports written inside functions too: an upward import hidden in a function still ties
the floors together.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "phf_kernels")
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 60
MAX_LONG_FUNCTIONS = 3

# The floors of the code, bottom first. A unit is a package of harness (harness.data), a top-level
# module (harness.engine) or phf_kernels. A unit imports only units on floors below its own; a
# new unit must be given a floor here (docs/design.md draws them).
LAYERS: list[tuple[str, set[str]]] = [
    (
        "foundation",
        {
            "harness",
            "harness.atomic",
            "harness.console",
            "harness.control_tokens",
            "harness.hub",
            "harness.plugins",
            "harness.run_folder",
            "phf_kernels",
        },
    ),
    (
        "schema and tools",
        {
            "harness.config",
            "harness.distributed",
            "harness.hub_refs",
            "harness.scoring",
            "harness.tokenizer",
        },
    ),
    (
        "definitions",
        {
            "harness.ds_config",
            "harness.faults",
            "harness.metrics",
            "harness.model",
            "harness.objectives",
            "harness.tasks",
        },
    ),
    ("data and the run config", {"harness.data", "harness.run_config"}),
    ("checkpoints", {"harness.checkpoints", "harness.compat"}),
    ("evaluation", {"harness.evaluation", "harness.chaos"}),
    (
        "applications",
        {"harness.analysis", "harness.downstream", "harness.engine", "harness.red_team"},
    ),
    ("entry points", {"harness.cli"}),
]


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imported(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules that `module` imports, anywhere in its file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            # `import a.b.c` imports a, a.b and a.b.c; keep the deepest module of ours.
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
    return targets


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def unit_of(module: str) -> str:
    """The unit a module belongs to: `harness.data.plan` -> `harness.data`."""
    parts = module.split(".")
    return parts[0] if parts[0] != "harness" else ".".join(parts[:2])


def upward_imports(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    """Imports between units that do not point to a lower floor (and units without a floor)."""
    floor = {unit: i for i, (_, units) in enumerate(layers) for unit in units}
    bad = []
    for module, targets in graph.items():
        here = unit_of(module)
        if here not in floor:
            bad.append(f"{module}: unit {here} has no floor in LAYERS")
            continue
        for target in sorted(targets):
            there = unit_of(target)
            if there != here and floor.get(there, len(layers)) >= floor[here]:
                bad.append(f"{module} -> {target} ({layers[floor[here]][0]} may not import it)")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def long_functions() -> list[tuple[str, int]]:
    found = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append((f"{module}.{node.name}", length))
    return sorted(found, key=lambda item: -item[1])


def test_imports_point_down_the_layers():
    assert upward_imports(import_graph()) == []


def test_layer_check_sees_an_upward_import():
    layers = [("low", {"harness.a"}), ("high", {"harness.b"})]
    graph = {"harness.a.x": {"harness.b.y"}, "harness.b.y": {"harness.a.x"}, "harness.c": set()}
    assert upward_imports(graph, layers) == [
        "harness.a.x -> harness.b.y (low may not import it)",
        "harness.c: unit harness.c has no floor in LAYERS",
    ]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_cycle_finder_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_name_modules_that_exist():
    modules = _modules()
    missing = []
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                top = node.module.split(".")[0]
                if top in PACKAGES and node.module not in modules:
                    missing.append(f"{module}: {node.module}")
    assert missing == []


def test_few_long_functions():
    found = long_functions()
    assert len(found) <= MAX_LONG_FUNCTIONS, found


def test_no_long_files():
    long_files = {
        str(path.relative_to(ROOT)): n
        for path in _modules().values()
        if (n := len(path.read_text().splitlines())) > MAX_FILE_LINES
    }
    assert long_files == {}
