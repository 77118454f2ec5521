"""Static checks of the code and the CLI: SQL is never built from strings, and the key
never shows."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ingestor"
SQL_CALLS = {"execute", "executemany", "fetch", "fetchrow", "fetchval"}


def sql_arguments() -> list[tuple[str, ast.expr]]:
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in SQL_CALLS
                and node.args
            ):
                found.append((f"{path.name}:{node.lineno}", node.args[0]))
    return found


def test_there_are_sql_calls_to_check() -> None:
    assert len(sql_arguments()) >= 8


@pytest.mark.parametrize(("where", "argument"), sql_arguments(), ids=str)
def test_sql_text_is_a_constant_or_a_sql_file_never_built(where: str, argument: ast.expr) -> None:
    # A literal, a query("name") from ingestor/sink/sql/, an attribute holding one, or `sql`:
    # a migration file's text; never an f-string, a concatenation or a % / .format().
    allowed = (
        isinstance(argument, ast.Constant)
        or (isinstance(argument, ast.Name) and argument.id == "sql" and where.startswith("schema"))
        or (isinstance(argument, ast.Call) and getattr(argument.func, "id", "") == "query")
        or isinstance(argument, ast.Attribute)
    )
    assert allowed, f"{where}: SQL built at run time"


def test_help_never_shows_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "super-secret-key-material-0123456789abcdef"
    env = {"INGESTOR_HMAC_KEY": key, "PATH": "/usr/bin:/bin"}
    for args in (["--help"], ["run", "--help"], ["demo", "--help"]):
        result = subprocess.run(
            [sys.executable, "-m", "ingestor", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0
        assert key not in result.stdout + result.stderr
