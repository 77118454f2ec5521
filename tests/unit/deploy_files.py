"""Reading the deployment files for the tests: paths, YAML documents, and a small
Dockerfile parser (instructions with their continuation lines joined, split into stages)."""

from __future__ import annotations

import functools
import json
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
K8S = ROOT / "deploy" / "k8s"
PROMETHEUS = ROOT / "deploy" / "prometheus"
# deploy/k8s/overlays/<name>: each renders to a complete set of objects to apply.
OVERLAYS = ("service", "batch", "sidecar")
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"

# The service's defaults (README's configuration table) that the deployment files rely on.
DEFAULT_METRICS_PORT = 9108
DEFAULT_SHUTDOWN_TIMEOUT = 30.0


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice, as Docker Compose and
    kubectl do (PyYAML would silently keep the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        repeated = sorted({str(key) for key in keys if keys.count(key) > 1})
        if repeated:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate keys {repeated}", node.start_mark
            )
        return super().construct_mapping(node, deep=deep)


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    """The non-empty documents of a YAML file (duplicate keys refused)."""
    with path.open(encoding="utf-8") as handle:
        return [document for document in yaml.load_all(handle, StrictLoader) if document]


def yaml_document(path: Path) -> dict[str, Any]:
    (document,) = yaml_documents(path)
    return document


def tool(name: str) -> str:
    """The path of a command-line tool (the venv's copy first: `make` puts promtool there),
    or a skip naming what is missing where it is not installed."""
    local = ROOT / ".venv" / "bin" / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:  # at collection time (parametrized tests) this skips the module
        pytest.skip(
            f"{name} is not installed: tests that need it are skipped", allow_module_level=True
        )
    return found


def run_tool(*command: str) -> str:
    """Run a tool; its output, or a failure that shows it."""
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


@functools.cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    """The objects `kubectl kustomize deploy/k8s/overlays/<overlay>` renders."""
    output = run_tool(tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay))
    return tuple(document for document in yaml.load_all(output, StrictLoader) if document)


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ...
    arguments: str  # the rest, continuation lines joined with single spaces
    line: int  # where the instruction starts

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction (ENTRYPOINT ["a", "b"]), else None."""
        return _json_array(self.arguments)


def _json_array(text: str) -> list[str] | None:
    if not text.startswith("["):
        return None
    value = json.loads(text)
    assert isinstance(value, list), text
    return [str(item) for item in value]


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order. Comments and blank lines are dropped (also inside a continued
    instruction, as Docker does); a line ending in a backslash continues on the next."""
    instructions: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not parts:
            start = number
        continued = line.endswith("\\")
        parts.append(line[:-1].strip() if continued else line)
        if not continued:
            keyword, _, arguments = " ".join(part for part in parts if part).partition(" ")
            instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
            parts = []
    assert not parts, "the Dockerfile ends inside a continued instruction"
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The build stages: each starts with its FROM."""
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        assert result, f"line {instruction.line}: {instruction.keyword} before the first FROM"
        result[-1].append(instruction)
    return result


def env_values(stage: list[Instruction]) -> dict[str, str]:
    """ENV KEY=VALUE ... of a stage (the modern form; the legacy `ENV KEY VALUE` too)."""
    values: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword != "ENV":
            continue
        words = shlex.split(instruction.arguments)
        if "=" not in words[0]:
            values[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            name, _, value = word.partition("=")
            values[name] = value
    return values


def healthcheck_command(instruction: Instruction) -> list[str]:
    """The command of `HEALTHCHECK [--option=value ...] CMD ...` (exec form, or a shell
    form as ["/bin/sh", "-c", ...])."""
    words = instruction.arguments.split(" ")
    while words and words[0].startswith("--"):
        words.pop(0)
    assert words, instruction.arguments
    assert words[0].upper() == "CMD", instruction.arguments
    command = " ".join(words[1:]).strip()
    return _json_array(command) or ["/bin/sh", "-c", command]


def dockerfile() -> list[list[Instruction]]:
    return stages(parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8")))
