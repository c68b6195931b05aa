"""The house rules the code keeps: small modules and classes, imports that point one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from amnetvid_sk._layers import LAYERS  # the package's own layer map, lowest first

PACKAGE = Path(__file__).resolve().parents[1] / "amnetvid_sk"
PIPELINES = Path(__file__).resolve().parents[1] / "pipelines" / "__init__.py"
MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 300

RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    # the top-level pipelines/ folder is amnetvid_sk.pipelines (pyproject.toml maps it): its
    # __init__.py is checked with the package (the recipes themselves are users' examples)
    found["amnetvid_sk.pipelines"] = PIPELINES
    return found


MODULES = _modules()


def _rank(module: str) -> int:
    name = module
    while name not in RANK or (name == "amnetvid_sk" and module != name):  # the root holds only itself
        if "." not in name:
            raise AssertionError(f"{module} is in no layer of amnetvid_sk/_layers.py: add it to LAYERS")
        name = name.rsplit(".", 1)[0]
    return RANK[name]


def _imports(module: str, path: Path) -> set[str]:
    """Modules of this package that ``module`` imports anywhere (functions included)."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # `from .x import y` imports x, and y too where y is a module; `from . import y`
            # imports only y
            targets = ([stem] if node.module else []) + [f"{stem}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rsplit(".", 1)[0] if "." in target else ""
            if target and target != module:
                found.add(target)
    return found


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_are_short(module):
    """No module of the package is over 500 lines."""
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module} has {lines} lines (at most {MAX_MODULE_LINES})"


def test_classes_are_short():
    """No class of the package is over 300 lines."""
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                long.append(f"{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not long, long


def test_imports_point_down_the_layers():
    """A module imports only from its own layer or lower ones (see amnetvid_sk/_layers.py), functions included."""
    upward = [f"{m} -> {t}" for m, targets in GRAPH.items() for t in sorted(targets) if _rank(t) > _rank(m)]
    assert not upward, upward


def test_no_import_cycles():
    """The import graph between the package's modules has no cycle, imports inside functions included."""
    state, cycles = {}, []

    def visit(module, trail):
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            # a package's __init__ importing its own modules is how packages work; a module of
            # the package importing its __init__ back is a cycle
            if state.get(target) == "open":
                cycles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_the_layer_table_names_only_real_modules():
    """Every name in LAYERS is a module or package of amnetvid_sk (the table cannot go stale)."""
    stale = [name for name in RANK if name not in MODULES]
    assert not stale, stale


def test_no_public_name_is_shadowed_by_a_subpackage():
    """``amnetvid_sk.NAME`` is the exported object even after every module has been imported: a
    subpackage named like an export (``extract``) would replace it on the package once loaded."""
    import importlib

    import amnetvid_sk

    for module in sorted(MODULES):
        if not module.endswith("__main__"):  # running it is running the command line
            importlib.import_module(module)
    shadowed = [name for name in amnetvid_sk.__all__ if isinstance(getattr(amnetvid_sk, name), type(amnetvid_sk))]
    assert not shadowed, f"exports replaced by a module of the same name: {shadowed}"
