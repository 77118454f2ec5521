"""docker-compose.yml: valid against the Compose Specification's JSON schema (vendored in
tests/data), every service with a health check, and the ingestor started only once
LocalStack and PostgreSQL are healthy."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema
import pytest

from tests.unit.deploy_files import (
    COMPOSE_FILE,
    DATA,
    DEFAULT_METRICS_PORT,
    DEFAULT_SHUTDOWN_TIMEOUT,
    ROOT,
    dockerfile,
    yaml_document,
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml_document(COMPOSE_FILE)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads((DATA / "compose-spec.json").read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def errors(validator: jsonschema.Draft7Validator, document: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def environment(service: dict[str, Any]) -> dict[str, str]:
    values = service.get("environment", {})
    if isinstance(values, list):
        values = dict(item.split("=", 1) for item in values)
    return {name: str(value) for name, value in values.items()}


def seconds(duration: str) -> float:
    """A Compose duration such as 40s, 1m30s, 500ms."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts, duration
    assert "".join(number + unit for number, unit in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def test_matches_the_compose_specification(
    compose: dict[str, Any], validator: jsonschema.Draft7Validator
) -> None:
    assert errors(validator, compose) == []


def test_the_schema_catches_mistakes(
    compose: dict[str, Any], validator: jsonschema.Draft7Validator
) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["ingestor"]["depends_on"]["postgres"]["condition"] = "service_ready"
    broken["services"]["ingestor"]["healthcheck"]["intervall"] = "5s"
    found = errors(validator, broken)
    assert any("depends_on" in error for error in found), found
    assert any("healthcheck" in error and "intervall" in error for error in found), found


def test_every_service_has_a_health_check(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable", False), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_ingestor_waits_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    depends_on = services["ingestor"]["depends_on"]
    assert set(depends_on) == set(services) - {"ingestor"}
    assert {dep["condition"] for dep in depends_on.values()} == {"service_healthy"}


def test_ingestor_is_built_from_the_dockerfile(compose: dict[str, Any]) -> None:
    build = compose["services"]["ingestor"]["build"]
    context = build if isinstance(build, str) else build["context"]
    name = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (ROOT / context / name).is_file()


def test_metrics_port_is_published(compose: dict[str, Any]) -> None:
    service = compose["services"]["ingestor"]
    port = int(environment(service).get("INGESTOR_METRICS_PORT", DEFAULT_METRICS_PORT))
    assert f"{port}:{port}" in service["ports"]
    final = dockerfile()[-1]
    exposed = " ".join(i.arguments for i in final if i.keyword == "EXPOSE")
    assert str(port) in exposed.split()


def test_stop_grace_period_exceeds_the_shutdown_timeout(compose: dict[str, Any]) -> None:
    service = compose["services"]["ingestor"]
    timeout = float(environment(service).get("INGESTOR_SHUTDOWN_TIMEOUT", DEFAULT_SHUTDOWN_TIMEOUT))
    assert seconds(service["stop_grace_period"]) > timeout


def test_hmac_key_is_required_from_the_environment_not_written_down(
    compose: dict[str, Any],
) -> None:
    key = environment(compose["services"]["ingestor"])["INGESTOR_HMAC_KEY"]
    assert re.fullmatch(r"\$\{INGESTOR_HMAC_KEY:\?[^}]+\}", key), key


def test_queue_is_the_one_the_localstack_hook_creates(compose: dict[str, Any]) -> None:
    localstack = compose["services"]["localstack"]
    (mount,) = localstack["volumes"]
    source, target, _mode = mount.split(":")
    script = ROOT / source
    assert script.is_file()
    assert target.startswith("/etc/localstack/init/ready.d/")
    created = re.search(r"^QUEUE_NAME=(\S+)$", script.read_text(encoding="utf-8"), re.M)
    assert created
    queue_url = environment(compose["services"]["ingestor"])["INGESTOR_QUEUE_URL"]
    assert queue_url.rsplit("/", 1)[1] == created[1]
