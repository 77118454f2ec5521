"""deploy/airflow: the DAG runs the batch mode on a schedule, with retries. Imported through
Airflow where it is installed; read with `ast` otherwise (Airflow is not a dependency)."""

from __future__ import annotations

import ast
import importlib.util
import tomllib
from pathlib import Path
from typing import Any

from tests.unit.deploy_files import ROOT

DAG_FILE = ROOT / "deploy" / "airflow" / "ingestor_drain_dag.py"
OPERATORS = {"KubernetesPodOperator": "arguments", "BashOperator": "bash_command"}


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _name(n.func) == name]


def _literals(pairs: list[tuple[str, ast.expr]]) -> dict[str, Any]:
    """The pairs whose values are literals; a dict keeps its literal entries
    (default_args={"retries": 2, "retry_delay": timedelta(...)} -> {"retries": 2})."""
    values: dict[str, Any] = {}
    for name, node in pairs:
        if isinstance(node, ast.Dict):
            entries = [
                (k.value, v)
                for k, v in zip(node.keys, node.values, strict=True)
                if isinstance(k, ast.Constant) and isinstance(k.value, str)
            ]
            values[name] = _literals(entries)
            continue
        try:
            values[name] = ast.literal_eval(node)
        except ValueError:
            continue
    return values


def _keywords(call: ast.Call) -> dict[str, Any]:
    """Keyword arguments whose values are literals (others are left out)."""
    return _literals([(str(keyword.arg), keyword.value) for keyword in call.keywords])


def facts_from_source(path: Path) -> dict[str, Any]:
    """dag_id, schedule, the task's command and its retries, read without importing."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    (dag_call,) = _calls(tree, "DAG")
    dag = _keywords(dag_call)
    tasks = [
        (_keywords(call), argument)
        for operator, argument in OPERATORS.items()
        for call in _calls(tree, operator)
    ]
    assert len(tasks) == 1, "one task: the drain run"
    task, argument = tasks[0]
    command = task[argument]
    return {
        "dag_id": dag["dag_id"],
        "schedule": dag["schedule"],
        "command": command if isinstance(command, list) else command.split(),
        "retries": task.get("retries", dag.get("default_args", {}).get("retries")),
    }


def facts_from_airflow(path: Path) -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("ingestor_drain_dag", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.dag
    (task,) = dag.tasks
    command = getattr(task, "arguments", None) or str(getattr(task, "bash_command", "")).split()
    schedule = getattr(dag, "schedule", None) or getattr(dag, "schedule_interval", None)
    return {
        "dag_id": dag.dag_id,
        "schedule": str(getattr(schedule, "expression", schedule)),
        "command": list(command),
        "retries": task.retries,
    }


def dag_facts() -> dict[str, Any]:
    if importlib.util.find_spec("airflow") is not None:
        return facts_from_airflow(DAG_FILE)
    return facts_from_source(DAG_FILE)


def test_dag_drains_the_queue_on_a_schedule_with_retries() -> None:
    facts = dag_facts()
    assert facts["dag_id"] == "ingestor_drain"
    assert len(str(facts["schedule"]).split()) == 5, "a cron expression"
    command = facts["command"]
    assert "run" in command
    assert "--drain" in command
    assert command.index("run") < command.index("--drain")
    assert facts["retries"] >= 1


def test_source_reading_sees_the_same_dag() -> None:
    # The ast reading runs everywhere, also where Airflow is installed.
    facts = facts_from_source(DAG_FILE)
    assert facts["dag_id"] == "ingestor_drain"
    assert facts["command"] == ["run", "--drain"]
    assert facts["schedule"] == "0 * * * *"
    assert facts["retries"] == 2


def test_airflow_is_not_a_dependency_of_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements.extend(extra)
    assert not [r for r in requirements if "airflow" in r.lower()]
    for source in (ROOT / "ingestor").rglob("*.py"):
        assert "airflow" not in source.read_text(encoding="utf-8"), source
