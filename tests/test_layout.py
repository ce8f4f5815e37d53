"""The package's dependencies run one way (CONTRIBUTING.md has the picture).

Every module of `keras_graft` has a rank; it may import modules of its own rank
or below, never above, function-local imports included. The tools
(`keras_graft_tools`) import the library; the library never imports them.
"""

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent / "src"

# Lowest first. The longest matching prefix gives a module its rank.
RANKS = {
    "keras_graft.errors": 0,
    "keras_graft._compat": 1,
    "keras_graft.terminal": 1,
    "keras_graft.child_process": 1,
    "keras_graft.core.safety": 2,
    "keras_graft.core.unregistered": 2,
    "keras_graft.core.op_names": 3,
    "keras_graft.core.arguments": 4,
    "keras_graft.core.static_values": 4,
    "keras_graft.core.inference": 5,
    "keras_graft.backends": 6,
    "keras_graft.core.op_layer": 7,
    "keras_graft.core": 7,
    "keras_graft.patches": 8,
    "keras_graft.layers": 8,
    "keras_graft.keras2": 9,
    "keras_graft.inspection": 10,
    "keras_graft": 11,  # the package itself: the public API, installing the patches
    "keras_graft_tools": 12,
}


def rank(module: str) -> int:
    prefixes = [p for p in RANKS if module == p or module.startswith(p + ".")]
    if not prefixes:
        raise AssertionError(f"{module} has no rank in tests/test_layout.py: give its package one")
    return RANKS[max(prefixes, key=len)]


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(SOURCE.rglob("*.py")):
        name = ".".join(path.relative_to(SOURCE).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imported(path: Path, package: str) -> set[str]:
    """The keras_graft modules `path` imports, at any depth of its code."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base])
            names.update(f"{base}.{alias.name}" for alias in node.names)
            names.add(base)
    known = modules()
    resolved = set()
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name.startswith("keras_graft"):
            resolved.add(name)
    return resolved


def test_every_import_goes_down_or_sideways():
    upward = []
    for module, path in modules().items():
        if not module.startswith("keras_graft"):
            continue
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for target in imported(path, package):
            if target != module and rank(target) > rank(module) and not module.startswith(target + "."):
                upward.append(f"{module} (rank {rank(module)}) imports {target} (rank {rank(target)})")
    assert not upward, "\n".join(upward)


def test_the_library_never_imports_the_tools():
    for module, path in modules().items():
        if module.startswith("keras_graft.") or module == "keras_graft":
            package = module if path.name == "__init__.py" else module.rpartition(".")[0]
            assert not any(t.startswith("keras_graft_tools") for t in imported(path, package)), module


def test_the_rank_table_catches_an_upward_import(tmp_path):
    offender = tmp_path / "offender.py"
    offender.write_text("def f():\n    from keras_graft.inspection import inspect\n")
    assert "keras_graft.inspection" in imported(offender, "keras_graft.core")
    assert rank("keras_graft.inspection") > rank("keras_graft.core.safety")
