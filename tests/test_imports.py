"""The project's own imports form no cycle, function-local imports included (a cycle hidden in a
function still ties two modules together), and each layer imports only the layers below it
(docs/architecture.md). Static: every .py file is parsed, none is imported."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("configuration", "model", "handler", "training", "harness", "scripts", "tests", "container", "deploy")
# What each top-level folder may import besides itself: docs/architecture.md's layers.
MAY_IMPORT = {
    "configuration": set(), "container": set(), "model": set(), "handler": {"model"},
    "training": {"configuration", "model"}, "harness": {"configuration", "model", "training"},
    "scripts": {"configuration", "model", "handler", "training", "harness"},
    "tests": {"configuration", "model", "handler", "training", "harness"}, "deploy": {"configuration", "model"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules `path` imports anywhere in its body (`from a import b` counts a.b when it is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def import_graph() -> dict[str, set[str]]:
    files = [p for p in REPO.rglob("*.py") if p.relative_to(REPO).parts[0] in
             {*PACKAGES, "configuration.py"} and ".venv" not in p.parts]
    modules = {module_name(p): p for p in files}
    return {name: project_imports(path, set(modules)) - {name} for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (depth-first search)."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                found.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_cycles():
    graph = import_graph()
    assert "training.evaluate" in graph["training.calibrate"]   # the walk sees the project's imports
    assert cycles(graph) == []


def test_each_layer_imports_only_the_layers_below_it():
    upward = {(module, target) for module, targets in import_graph().items() for target in targets
              if target.split(".")[0] not in MAY_IMPORT[module.split(".")[0]] | {module.split(".")[0]}}
    assert upward == set()


def test_a_cycle_is_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
