"""The package's shape, guarded: no import cycle, and no module importing a layer above
its own (cli and demo -> pipeline -> custody and observe -> source, transform and sink ->
the core: errors, models, ports, settings...). Lazy imports inside functions count too:
they are dependencies all the same."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ingestor"

# Top-level modules of the package are the core (layer 0).
LAYERS = {
    "source": 1,
    "transform": 1,
    "sink": 1,
    "custody": 2,
    "observe": 2,
    "pipeline": 3,
    "cli": 4,
    "demo": 4,
}
# Within layer 1, the stages do not know each other: each talks to the others through
# `ports.py` and `models.py` only.
INDEPENDENT = {"source", "transform", "sink"}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imported(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The ingestor modules `path` imports, anywhere in it."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [name if name in known else node.module for name in names]
        else:
            continue
        yield from (name for name in names if name.split(".")[0] == "ingestor")


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: set(imported(path, known)) - {name} for name, path in known.items()}


def package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else None


def layer(module: str) -> int:
    if module == "ingestor.__main__":
        return 5
    return LAYERS.get(package(module) or "", 0)


def test_the_walk_sees_the_whole_package() -> None:
    imports = graph()
    assert len(imports) > 40
    assert "ingestor.pipeline.supervisor" in imports["ingestor.pipeline.service"]
    assert "ingestor.ports" in imports["ingestor.source.receiver"]


def test_no_import_cycle() -> None:
    imports = graph()
    cycles = []
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(imports.get(module, ())):
            if state.get(target) == "open":
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(imports):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_no_module_imports_a_higher_layer() -> None:
    wrong = [
        f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
        for module, targets in sorted(graph().items())
        for target in sorted(targets)
        if layer(target) > layer(module)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_stages_know_each_other_only_through_ports() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in sorted(graph().items())
        for target in sorted(targets)
        if package(module) in INDEPENDENT
        and package(target) in INDEPENDENT
        and package(module) != package(target)
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("ingestor.errors", 0),
        ("ingestor.ports", 0),
        ("ingestor.source.sqs", 1),
        ("ingestor.custody.vault", 2),
        ("ingestor.pipeline.writer", 3),
        ("ingestor.cli.main", 4),
        ("ingestor.demo", 4),
    ],
)
def test_layers_are_read_from_the_path(module: str, expected: int) -> None:
    assert layer(module) == expected
