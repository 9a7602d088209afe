"""The package's layering, read from the source (no import is executed).

``drn_tf`` is layered: each package may import its own modules and those of the
packages below it, never one above it, and no module may reach itself again
through any chain of imports, module-level or inside functions (a function-level
import is a dependency too: it only runs later). README's "Layer map" and
docs/architecture.md describe the same order.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "drn_tf"

# bottom to top; a package may import from its own rank and below
LAYERS = ("core", "models", "data", "export", "inference", "train", "bench", "serve", "cli")
FRAMEWORKS = ("keras", "tensorflow", "jax", "tf_keras", "torch")


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _lazy_targets(tree: ast.Module) -> list[str]:
    """The modules ``drn_tf/__init__.py`` loads on attribute access (its ``_LAZY`` / ``_MODULES`` tables)."""
    out = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            out += [v.value for v in node.value.values
                    if isinstance(v, ast.Constant) and isinstance(v.value, str) and v.value.startswith("drn_tf.")]
    return out


def imports_of(path: Path, modules) -> dict[str, list[tuple[int, str]]]:
    """``{imported drn_tf module: [(line, statement)]}`` for every import anywhere in the file."""
    tree = ast.parse(path.read_text())
    out: dict[str, list] = {}
    here = module_name(path)

    def add(target, node):
        if target != here or path.name != "__init__.py":
            out.setdefault(target, []).append((node.lineno, ast.unparse(node)))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "drn_tf":
                    add(a.name, node)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "drn_tf":
                continue
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                add(sub if sub in modules else node.module, node)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import (write drn_tf.<package>.<module>)")
    if path == PKG / "__init__.py":
        for target in _lazy_targets(tree):
            out.setdefault(target, []).append((0, "lazy attribute table"))
    return out


def graph():
    modules = all_modules()
    return modules, {name: imports_of(path, modules) for name, path in modules.items()}


def test_every_import_names_an_existing_module():
    modules, edges = graph()
    missing = [f"{src}: {stmt} (line {line})" for src, targets in edges.items() for t, uses in targets.items()
               if t not in modules for line, stmt in uses]
    assert not missing, "\n".join(missing)


def test_no_import_cycle_module_level_or_in_functions():
    modules, edges = graph()
    adj = {m: sorted(t for t in edges[m] if t in modules and t != m) for m in modules}
    # Tarjan's strongly connected components
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in adj[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for m in modules:
        if m not in index:
            visit(m)
    detail = []
    for comp in sccs:
        for m in comp:
            detail += [f"  {m} -> {t}: {edges[m][t][0][1]}" for t in adj[m] if t in comp]
    assert not sccs, "import cycles:\n" + "\n".join(detail)


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_packages_import_only_downwards():
    modules, edges = graph()
    assert {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(LAYERS), \
        "a package was added or removed: place it in LAYERS (and README's layer map, docs/architecture.md)"
    stray = [m for m in modules if m != "drn_tf" and _layer(m) is None]
    assert not stray, f"modules outside the layered packages: {stray}"
    bad = []
    for src, targets in edges.items():
        ls = _layer(src)
        if ls is None:
            continue  # drn_tf/__init__.py: the lazy public facade
        for t, uses in targets.items():
            lt = _layer(t)
            if lt is None or LAYERS.index(lt) > LAYERS.index(ls):
                bad += [f"{src} ({ls}) imports {t} ({lt or 'drn_tf'}) at line {line}: {stmt}" for line, stmt in uses]
    assert not bad, "imports against the layering " + " < ".join(LAYERS) + ":\n" + "\n".join(bad)


@pytest.mark.parametrize("package", ["core"])
def test_protocol_layer_is_framework_free(package):
    """``drn_tf.core`` (bicubic, image I/O, benchmark pairs, numpy metrics, tiling) never imports a
    deep-learning framework, not even inside a function: it is what every backend and runtime shares."""
    bad = []
    for path in sorted((PKG / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] in FRAMEWORKS]
    assert not bad, bad


def test_the_checker_sees_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The graph code itself: a planted cycle and an upward import are found."""
    fake = tmp_path / "drn_tf"
    for rel, text in {
        "__init__.py": "",
        "core/__init__.py": "", "core/a.py": "def f():\n    from drn_tf.models.b import g\n",
        "models/__init__.py": "", "models/b.py": "from drn_tf.core.a import f\ndef g():\n    pass\n",
    }.items():
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "PKG", fake)
    modules, edges = graph()
    assert "drn_tf.models.b" in edges["drn_tf.core.a"] and "drn_tf.core.a" in edges["drn_tf.models.b"]
    with pytest.raises(AssertionError, match="import cycles"):
        test_no_import_cycle_module_level_or_in_functions()
    with pytest.raises(AssertionError):
        test_packages_import_only_downwards()
