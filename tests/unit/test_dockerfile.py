"""The Dockerfile: multi-stage, slim and non-root, stops on SIGTERM, reports its health,
runs `python -m ingestor` and exposes the metrics port."""

from __future__ import annotations

import re

import pytest

from tests.unit.deploy_files import (
    DEFAULT_METRICS_PORT,
    Instruction,
    dockerfile,
    env_values,
    healthcheck_command,
    parse_dockerfile,
    stages,
)

# What the final image must not contain: compilers and package installers of the build.
BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|cc|clang|make|build-essential|python3?-dev|libpq-dev)\b"
    r"|\bpip3?\s+install\b|\bpython3?\s+-m\s+pip\b|\buv\s+pip\b"
)


def keyword(stage: list[Instruction], name: str) -> list[Instruction]:
    return [instruction for instruction in stage if instruction.keyword == name]


def last(stage: list[Instruction], name: str) -> Instruction:
    found = keyword(stage, name)
    assert found, f"no {name} in the final stage"
    return found[-1]


@pytest.fixture(scope="module")
def final() -> list[Instruction]:
    return dockerfile()[-1]


def test_parser_joins_continuation_lines_and_drops_comments() -> None:
    text = (
        "# syntax comment\n"
        "FROM python:3.11-slim AS builder\n"
        "RUN apt-get update \\\n"
        "    # a comment inside the instruction\n"
        "    && echo done\n"
        "\n"
        "FROM python:3.11-slim\n"
        'ENV A=1 \\\n    B="two words"\n'
        'HEALTHCHECK --interval=5s \\\n    CMD ["python", "-c", "pass"]\n'
    )
    parsed = parse_dockerfile(text)
    assert [(i.keyword, i.line) for i in parsed] == [
        ("FROM", 2),
        ("RUN", 3),
        ("FROM", 7),
        ("ENV", 8),
        ("HEALTHCHECK", 10),
    ]
    assert parsed[1].arguments == "apt-get update && echo done"
    built = stages(parsed)
    assert len(built) == 2
    assert env_values(built[1]) == {"A": "1", "B": "two words"}
    assert healthcheck_command(built[1][-1]) == ["python", "-c", "pass"]


def test_parser_refuses_a_dangling_continuation() -> None:
    with pytest.raises(AssertionError, match="continued instruction"):
        parse_dockerfile("FROM python:3.11-slim\nRUN echo \\\n")


def test_multi_stage_build_with_the_same_slim_python_in_both() -> None:
    built = dockerfile()
    assert len(built) >= 2
    images = [stage[0].arguments.split()[0] for stage in built]
    assert re.fullmatch(r"python:3\.\d+(\.\d+)?-slim(-[a-z]+)?", images[-1]), images[-1]
    # Wheels compiled in the builder must match the runtime's Python and libc.
    assert images[0] == images[-1]


def test_final_stage_has_no_build_tools(final: list[Instruction]) -> None:
    for instruction in keyword(final, "RUN"):
        assert not BUILD_TOOLS.search(instruction.arguments), (
            f"line {instruction.line}: {instruction.arguments}"
        )
    copies = [instruction.arguments for instruction in keyword(final, "COPY")]
    # Only the installed packages come over from the builder, never the sources.
    assert copies == ["--from=builder /install /usr/local"]


def test_runs_as_a_numeric_non_root_user(final: list[Instruction]) -> None:
    user = last(final, "USER").arguments
    match = re.fullmatch(r"(\d+)(?::(\d+))?", user)
    assert match, f"USER {user} should be numeric (Kubernetes runAsNonRoot can verify it)"
    assert int(match[1]) != 0
    assert match[2] is None or int(match[2]) != 0
    created = " ".join(instruction.arguments for instruction in keyword(final, "RUN"))
    assert f"--uid {match[1]}" in created


def test_stops_on_sigterm(final: list[Instruction]) -> None:
    assert last(final, "STOPSIGNAL").arguments == "SIGTERM"


def test_entrypoint_is_the_cli_and_run_is_the_default_command(
    final: list[Instruction],
) -> None:
    assert last(final, "ENTRYPOINT").exec_form() == ["python", "-m", "ingestor"]
    assert last(final, "CMD").exec_form() == ["run"]


def test_exposes_the_metrics_port_it_serves(final: list[Instruction]) -> None:
    port = int(env_values(final)["INGESTOR_METRICS_PORT"])
    assert port == DEFAULT_METRICS_PORT
    exposed = {word.split("/")[0] for i in keyword(final, "EXPOSE") for word in i.arguments.split()}
    assert str(port) in exposed


def test_healthcheck_asks_the_service(final: list[Instruction]) -> None:
    healthcheck = last(final, "HEALTHCHECK")
    options = dict(
        word.removeprefix("--").split("=", 1)
        for word in healthcheck.arguments.split()
        if word.startswith("--")
    )
    assert {"interval", "timeout", "start-period", "retries"} <= set(options)
    command = healthcheck_command(healthcheck)
    assert command[0] == "python", "no curl or wget in the slim image: Python does the request"
    probe = " ".join(command)
    # Either the readiness endpoint on the metrics port, or the CLI's own check.
    assert ("/readyz" in probe and "INGESTOR_METRICS_PORT" in probe) or command[1:] == [
        "-m",
        "ingestor",
        "check",
    ]
