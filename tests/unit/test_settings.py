"""Settings: a bad value is one ConfigError naming the variable, never echoing a secret."""

from __future__ import annotations

import pytest

from ingestor.errors import ConfigError
from ingestor.settings import DEMO_HMAC_KEY, load_settings

GOOD_KEY = "settings-test-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for name in ("INGESTOR_HMAC_KEY", "INGESTOR_DATABASE_URL", "INGESTOR_QUEUE_URL", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type] - no .env file here


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("INGESTOR_HMAC_KEY", "too-short-secret", "at least 32 bytes"),
        ("INGESTOR_DATABASE_URL", "mysql://u@h/db", "postgresql://"),
        ("INGESTOR_DATABASE_URL", "postgresql://u@h:notaport/db", "invalid port"),
        ("INGESTOR_DATABASE_URL", "postgresql:///db", "names no host"),
        ("INGESTOR_QUEUE_URL", "login-queue", "http"),
        ("INGESTOR_RECEIVERS", "0", "greater than or equal to 1"),
        ("INGESTOR_BATCH_SIZE", "many", "valid integer"),
        ("INGESTOR_LOG_FORMAT", "xml", "text"),
        ("INGESTOR_ENVELOPE", "kinesis", "'auto', 'none', 'sns' or 'eventbridge'"),
        ("INGESTOR_METRICS_PORT", "70000", "less than or equal to 65535"),
        ("INGESTOR_METRICS_PORT", "-1", "greater than or equal to 0"),
        ("INGESTOR_METRICS_HOST", "http://0.0.0.0", "IP address or a host name"),
        ("INGESTOR_QUEUE_DEPTH_INTERVAL", "-5", "greater than or equal to 0"),
        ("INGESTOR_PROGRESS_INTERVAL", "soon", "valid number"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert raised.value.variable == variable
    assert problem in str(raised.value)
    assert "\n" not in str(raised.value)
    if variable == "INGESTOR_HMAC_KEY":
        assert value not in str(raised.value)


@pytest.mark.parametrize(
    ("value", "wrapping"),
    [(None, "auto"), ("none", "none"), ("SNS", "sns"), (" EventBridge", "eventbridge")],
)
def test_the_envelope_setting(
    monkeypatch: pytest.MonkeyPatch, value: str | None, wrapping: str
) -> None:
    if value is not None:
        monkeypatch.setenv("INGESTOR_ENVELOPE", value)
    assert load_settings().envelope == wrapping


def test_required_settings_are_named_when_missing() -> None:
    settings = load_settings()
    with pytest.raises(ConfigError, match="INGESTOR_QUEUE_URL: is required"):
        settings.require("queue_url", "database_url")


def test_the_key_never_appears_in_a_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGESTOR_HMAC_KEY", GOOD_KEY)
    settings = load_settings()
    assert GOOD_KEY not in repr(settings)
    assert GOOD_KEY not in str(settings.model_dump())
    assert settings.key_bytes == GOOD_KEY.encode()


def test_the_demo_key_is_refused_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGESTOR_HMAC_KEY", DEMO_HMAC_KEY)
    with pytest.raises(ConfigError, match="public demo key"):
        load_settings().require_production_key()
    monkeypatch.setenv("INGESTOR_ALLOW_DEMO_KEY", "true")
    load_settings().require_production_key()


def test_the_region_comes_from_the_queue_url_when_not_set() -> None:
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/login-queue"
    assert load_settings(queue_url=url).region == "eu-west-1"
    assert load_settings(queue_url=url, aws_region="us-west-2").region == "us-west-2"


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGESTOR_DRAIN", "false")
    assert load_settings(drain=True).drain is True
    assert load_settings(drain=None).drain is False


def test_observability_defaults_and_off_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOST", "PORT"):
        monkeypatch.delenv(f"INGESTOR_METRICS_{name}", raising=False)
    for name in ("QUEUE_DEPTH", "PROGRESS"):
        monkeypatch.delenv(f"INGESTOR_{name}_INTERVAL", raising=False)
    defaults = load_settings()
    assert (defaults.metrics_host, defaults.metrics_port) == ("0.0.0.0", 9108)
    assert (defaults.queue_depth_interval, defaults.progress_interval) == (15.0, 30.0)
    monkeypatch.setenv("INGESTOR_METRICS_PORT", "0")
    monkeypatch.setenv("INGESTOR_PROGRESS_INTERVAL", "0")
    monkeypatch.setenv("INGESTOR_METRICS_HOST", "::1")
    off = load_settings()
    assert (off.metrics_port, off.progress_interval, off.metrics_host) == (0, 0.0, "::1")
