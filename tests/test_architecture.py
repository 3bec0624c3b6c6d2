"""The import graph, read from the source with `ast`: the layers of the README's Architecture section hold.

Layers, lowest first: the remote-code files at the root; the `visionclip` library; `visionclip.training`;
the command-line entry points (`visionclip/cli`, `visionclip/training/main.py`, the root scripts). A module imports
only from its own layer or lower ones, and the modules of the project form no import cycle.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from visionclip.hub import HUB_CODE_FILES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "visionclip"
HUB_MODULES = frozenset(Path(name).stem for name in HUB_CODE_FILES)
# What a Hub user's `trust_remote_code` process needs: torch, transformers (and huggingface_hub, which transformers
# itself requires: its `strict` dataclass declares transformers 5 configs), numpy, PIL and the standard library.
REMOTE_CODE_THIRD_PARTY = frozenset({"torch", "transformers", "huggingface_hub", "numpy", "PIL"})


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    """Every module of the package and the root remote-code files, by dotted name."""
    modules = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
    modules.update({name: ROOT / f"{name}.py" for name in HUB_MODULES})
    return modules


def _is_main_guard(node: ast.AST) -> bool:
    """`if __name__ == "__main__":`: runs only when the file is executed as a script, never on import."""
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in node.test.comparators)
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if _is_main_guard(node):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _imports(node)


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _targets(package: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The absolute names one import statement in `package` names (`from a import b` gives `a` and `a.b`)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if node.level:
        parts = package.split(".") if package else []
        target = ".".join([*parts[: len(parts) - node.level + 1], *([node.module] if node.module else [])])
    else:
        target = node.module or ""
    return {target, *(f"{target}.{alias.name}" for alias in node.names)}


def imported_names(name: str, path: Path) -> set[str]:
    """The absolute names module `name` (source `path`) imports, relative imports resolved."""
    package = _package_of(name, path)
    return {
        target for node in _imports(ast.parse(path.read_text(encoding="utf-8"))) for target in _targets(package, node)
    }


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    modules = project_modules()
    return {name: imported_names(name, path) & modules.keys() - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path `[a, b, ..., a]`, or None."""
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = "open"
        for neighbour in sorted(graph[node]):
            if state.get(neighbour) == "open":
                return [*trail[trail.index(neighbour) :], neighbour]
            if neighbour not in state and (cycle := visit(neighbour, [*trail, neighbour])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_the_graph_sees_relative_and_function_local_imports():
    graph = import_graph()
    assert "visionclip.schema" in graph["visionclip.captions"]  # `from .schema import ...`
    assert "visionclip.shards" in graph["visionclip.synthetic.writer"]  # `from .. import shards`
    assert "image_processing_visionclip" in graph["visionclip.convert"]  # a root remote-code module
    assert "visionclip.cli.captions" not in graph["visionclip.captions"]  # only under `if __name__ == "__main__"`


def test_find_cycle_reports_the_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_library_never_imports_training():
    wrong = {
        name: sorted(target for target in targets if target.startswith("visionclip.training"))
        for name, targets in import_graph().items()
        if not name.startswith(("visionclip.training", "visionclip.cli"))
    }
    assert not {name: targets for name, targets in wrong.items() if targets}


def test_only_entry_points_import_the_command_line_modules():
    wrong = {
        name: sorted(target for target in targets if target.startswith("visionclip.cli"))
        for name, targets in import_graph().items()
        if not name.startswith("visionclip.cli") and not name.endswith(".__main__")  # `python -m` entry points
    }
    assert not {name: targets for name, targets in wrong.items() if targets}


@pytest.mark.parametrize("name", sorted(HUB_MODULES))
def test_remote_code_imports_only_what_a_hub_user_has(name: str):
    allowed = REMOTE_CODE_THIRD_PARTY | HUB_MODULES | set(sys.stdlib_module_names) | {"__future__"}
    tops = {target.split(".")[0] for target in imported_names(name, ROOT / f"{name}.py") if target}
    assert tops <= allowed, f"{name}.py imports {sorted(tops - allowed)}"


# Modules whose project imports the training and zero-shot parts of issue 14 move to the top; empty at merge.
# --help and option errors must answer without loading transformers, accelerate, datasets or scikit-learn
LOCAL_PROJECT_IMPORTS_ALLOWED = frozenset({"visionclip.training.main"})


def function_local_project_imports(name: str, path: Path, modules: set[str]) -> list[str]:
    """The project modules `name` imports inside functions, where the dependency graph is hidden from readers."""
    package = _package_of(name, path)
    return [
        f"line {node.lineno}: {ast.unparse(node)}"
        for function in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.Import | ast.ImportFrom) and _targets(package, node) & modules
    ]


def test_project_modules_are_imported_at_the_top():
    """Function-local imports are kept for heavy or optional third-party libraries only."""
    modules = project_modules()
    found = {
        name: lines
        for name, path in modules.items()
        if name not in LOCAL_PROJECT_IMPORTS_ALLOWED
        and (lines := function_local_project_imports(name, path, set(modules)))
    }
    assert not found
