"""The library's imports only go down its layers, and no module imports itself back.

Every module of ``handpose_lib`` is parsed (nothing is imported or run) and each ``import``
statement in it, at module level or inside a function, becomes an edge to the module of
``handpose_lib`` it names. Two rules are checked on that graph:

- no module imports a module of a higher layer (the layers are the README's module map:
  skeleton; the data, model, losses and metrics modules; training, evaluation and figures; the
  book model and the occlusion study; the command line);
- no cycle: following the imports from any module never leads back to it.

The README's module map lists every module with this layer.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import handpose_lib

ROOT = Path(handpose_lib.__file__).parent
PACKAGE = "handpose_lib"

# layer of each top-level module; everything under handpose_lib.data is layer 2
LAYERS = {
    "skeleton": 1,
    "metrics": 2,
    "checkpoint": 2,
    "lhr": 2,
    "losses": 2,
    "model": 2,
    "config": 2,
    "device": 2,
    "train": 3,
    "evaluate": 3,
    "viz": 3,
    "inference": 3,
    "detect": 3,
    "detector_train": 3,
    "verify": 4,
    "pipeline": 4,
    "book_model": 4,
    "occlusion": 4,
    "cli": 5,
    "__main__": 5,
}
DATA_LAYER = 2
PACKAGE_LAYER = 5  # handpose_lib/__init__.py: hp.<module> reaches every module


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def layer_of(module: str) -> int:
    parts = module.split(".")[1:]
    if not parts:
        return PACKAGE_LAYER
    if parts[0] == "data":
        return DATA_LAYER
    if parts[0] not in LAYERS:
        raise KeyError(f"{module} has no layer: add it to LAYERS in tests/test_layers.py (and the README)")
    return LAYERS[parts[0]]


def _resolve(name: str) -> str | None:
    """The module of ``handpose_lib`` that the dotted ``name`` names: the longest known prefix."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in MODULES:
            return ".".join(parts)
        parts.pop()
    return None


def imports_of(module: str) -> dict[str, int]:
    """{imported module of handpose_lib: line of the first import statement}."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: dict[str, int] = {}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # "from . import x": x may be a submodule; "from .m import f": f is a name in m
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for n in names:
            if n == PACKAGE or n.startswith(PACKAGE + "."):
                target = _resolve(n)
                if target is not None and target != module:
                    out.setdefault(target, node.lineno)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_module_has_a_layer():
    for m in MODULES:
        layer_of(m)


def test_no_module_imports_a_higher_layer():
    up = [
        f"{MODULES[m].relative_to(ROOT.parent)}:{line}: {m} (layer {layer_of(m)}) imports {t} "
        f"(layer {layer_of(t)})"
        for m, targets in GRAPH.items()
        for t, line in targets.items()
        if layer_of(t) > layer_of(m)
    ]
    assert not up, "imports that go up a layer:\n" + "\n".join(up)


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle of the graph as [m0, m1, ..., m0], or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for t in sorted(graph.get(m, {})):
            if state.get(t) == 1:
                return path[path.index(t) :] + [t]
            if t not in state and (c := visit(t)):
                return c
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_find_cycle_finds_cycles():
    assert find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {}}) is None
    assert find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {"b": 1}}) == ["b", "b"]


def test_relative_imports_resolve_to_modules():
    # a sample of edges known to exist, so the parser cannot silently miss imports
    assert "handpose_lib.skeleton" in GRAPH["handpose_lib.model"]
    assert "handpose_lib.data.sample" in GRAPH["handpose_lib.data.synthetic.render"]
    assert "handpose_lib.data.synthetic.hand" in GRAPH["handpose_lib.data.synthetic.camera"]


def test_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle (module level or in functions): " + " -> ".join(cycle)


def test_readme_module_map_lists_every_module_with_its_layer():
    readme = (ROOT.parent / "README.md").read_text()
    rows = {path: layer for layer, path in re.findall(r"^\| (\d) \| `([\w/]+\.py)` \|", readme, flags=re.M)}
    assert rows, "README.md has no module map (rows '| LAYER | `path.py` | what |')"
    wrong = []
    for m, path in MODULES.items():
        rel = path.relative_to(ROOT).as_posix()
        if path.name in ("__init__.py", "__main__.py") and rel != "data/synthetic/__init__.py":
            continue
        if rel not in rows:
            wrong.append(f"{rel}: not in the README's module map")
        elif int(rows[rel]) != layer_of(m):
            wrong.append(f"{rel}: layer {rows[rel]} in the README, {layer_of(m)} here")
    wrong += [f"{r}: no such module" for r in rows if not (ROOT / r).exists()]
    assert not wrong, "README module map: " + "; ".join(wrong)
