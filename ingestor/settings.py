"""Settings from INGESTOR_* environment variables and an optional .env file.

A bad value stops start-up with a `ConfigError` naming the variable; the message never
repeats the value, because some values are secrets.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingestor.errors import ConfigError
from ingestor.keytext import decode_key, weak_key_problem
from ingestor.models import PartitionBy, Wrapping

ENV_PREFIX = "INGESTOR_"
# The key `python -m ingestor demo` uses: public, so `run` refuses it unless told otherwise.
DEMO_HMAC_KEY = "demo-key-not-secret-do-not-use-in-production-0123456789"
# The domains of AWS's SQS endpoints in every partition.
_AWS_HOST = re.compile(
    r"(\.amazonaws\.com|\.amazonaws\.com\.cn|\.api\.aws|\.c2s\.ic\.gov|\.sc2s\.sgov\.gov"
    r"|\.cloud\.adc-e\.uk|\.csp\.hci\.ic\.gov)$"
)
_REGION_IN_URL = re.compile(r"sqs[.-]([a-z0-9-]+)\.amazonaws\.com")
# A host name, an IPv4 address or an IPv6 address (letters, digits, '.', '-', ':').
_HOST = re.compile(r"[A-Za-z0-9.:-]{1,253}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    queue_url: str | None = Field(None, description="URL of the SQS queue to read")
    database_url: SecretStr | None = Field(None, description="postgresql://user:pw@host/db")
    hmac_key: SecretStr | None = Field(None, description="masking key, at least 32 bytes")
    sqs_endpoint_url: str | None = Field(None, description="SQS-compatible endpoint; unset: AWS")
    aws_region: str | None = Field(
        None,
        validation_alias=AliasChoices("INGESTOR_AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
    )
    receivers: Annotated[int, Field(ge=1, le=256)] = 16
    receive_wait_seconds: Annotated[int, Field(ge=0, le=20)] = 20
    drain: bool = False
    drain_wait_seconds: Annotated[int, Field(ge=1, le=20)] = 2
    # Unset: the queue's own VisibilityTimeout, read at start-up (as any SQS consumer).
    visibility_timeout: Annotated[int, Field(ge=1, le=43_200)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=50_000)] = 2_000
    flush_interval: Annotated[float, Field(gt=0, le=60)] = 0.5
    buffer_messages: Annotated[int, Field(ge=10, le=1_000_000)] = 5_000
    writers: Annotated[int, Field(ge=1, le=32)] = 4
    shutdown_timeout: Annotated[float, Field(gt=0, le=3_600)] = 30.0
    max_hold_seconds: Annotated[float, Field(gt=0, le=43_200)] = 900.0
    # Binding every interface is what a container needs for Prometheus to scrape it.
    metrics_host: str = "0.0.0.0"  # noqa: S104
    metrics_port: Annotated[int, Field(ge=0, le=65_535)] = 9108  # 0: no HTTP server
    queue_depth_interval: Annotated[float, Field(ge=0, le=3_600)] = 15.0  # 0: not sampled
    progress_interval: Annotated[float, Field(ge=0, le=86_400)] = 30.0  # 0: no progress lines
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "text", "json"] = "auto"
    allow_demo_key: bool = False
    sqs_client: Literal["wire", "botocore"] = "wire"
    # auto: an SNS notification or EventBridge event around the event is recognised by shape
    envelope: Wrapping = "auto"
    # month: `migrate` (and the service's start-up) creates a missing user_logins
    # range-partitioned by month; an existing table is left as it is
    partition_by: PartitionBy = "none"
    vault_public_key: str | None = Field(
        None, description="vault public key (base64); unset: no vault, no recovery"
    )
    vault_cache_size: Annotated[int, Field(ge=0, le=10_000_000)] = 200_000
    demo_events: Annotated[int, Field(ge=1, le=1_000_000)] = 5_000
    demo_seed: int = 7

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("envelope", "partition_by", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("hmac_key")
    @classmethod
    def _key_strength(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            problem = weak_key_problem(value.get_secret_value().encode())
            if problem is not None:
                raise ValueError(problem)
        return value

    @field_validator("vault_public_key")
    @classmethod
    def _public_key(cls, value: str | None) -> str | None:
        if value is not None:
            decode_key(value)  # a ValueError names the problem, never the key
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _check_postgres_url(value.get_secret_value())
        return value

    @field_validator("metrics_host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not _HOST.fullmatch(value):
            raise ValueError("must be an IP address or a host name (0.0.0.0: every interface)")
        return value

    @field_validator("queue_url", "sqs_endpoint_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError("must be an http:// or https:// URL")
        return value

    @property
    def region(self) -> str | None:
        """AWS_REGION, else the region in an AWS queue URL; None leaves it to botocore
        (a profile's region, else us-east-1 for an SQS-compatible server)."""
        if self.aws_region:
            return self.aws_region
        found = _REGION_IN_URL.search(self.queue_url or "")
        return found.group(1) if found else None

    def endpoint_hint(self) -> str | None:
        """A hint when the queue URL is not on AWS and nothing points the client at its
        server (the calls would go to AWS's public endpoint)."""
        host = urlsplit(self.queue_url or "").hostname or ""
        if (
            not host
            or _AWS_HOST.search(host)
            or self.sqs_endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_SQS")
            or os.environ.get("AWS_ENDPOINT_URL")
        ):
            return None
        return (
            f"the queue URL's host {host} is not AWS's and no endpoint is set: set "
            f"{env_name('sqs_endpoint_url')} to that server (e.g. http://{host}:4566)"
        )

    @property
    def key_bytes(self) -> bytes:
        if self.hmac_key is None:
            raise ConfigError(env_name("hmac_key"), "is required")
        return self.hmac_key.get_secret_value().encode()

    @property
    def vault_key(self) -> bytes | None:
        return None if self.vault_public_key is None else decode_key(self.vault_public_key)

    @property
    def dsn(self) -> str:
        if self.database_url is None:
            raise ConfigError(env_name("database_url"), "is required")
        return self.database_url.get_secret_value()

    def require(self, *fields: str) -> None:
        """Raise one ConfigError naming every one of `fields` that is unset."""
        missing = [
            (env_name(field), "is required") for field in fields if getattr(self, field) is None
        ]
        if missing:
            raise ConfigError(*missing[0], *missing[1:])

    def require_production_key(self) -> None:
        """`run`, `check`, `rekey` and `rejects replay` refuse the public demo key unless
        explicitly allowed."""
        self.require("hmac_key")
        if self.key_bytes == DEMO_HMAC_KEY.encode() and not self.allow_demo_key:
            raise ConfigError(env_name("hmac_key"), self.demo_key_problem())

    @staticmethod
    def demo_key_problem() -> str:
        return (
            "is the public demo key; set a secret key, "
            f"or {env_name('allow_demo_key')}=true for a throwaway setup"
        )


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def load_settings(required: Sequence[str] = (), **overrides: Any) -> Settings:
    """Settings from the environment, .env and `overrides` (CLI flags win). Every bad
    value and every unset one of `required` is named in one ConfigError. The AWS and
    proxy variables of .env are exported for botocore, as in any AWS tool."""
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        settings = Settings(**given)
    except ValidationError as error:
        problems = _problems(error)
        bad = {name for name, _ in problems}
        problems += [
            (env_name(field), "is required")
            for field in required
            if env_name(field) not in bad and _unset(field, given)
        ]
        raise ConfigError(*problems[0], *problems[1:]) from None
    settings.require(*required)
    export_aws_settings(str(settings.model_config.get("env_file") or ".env"))
    return settings


def _problems(error: ValidationError) -> list[tuple[str, str]]:
    return [
        (
            env_name(str(item["loc"][0])) if item["loc"] else "settings",
            str(item["msg"]).removeprefix("Value error, "),
        )
        for item in error.errors(include_input=False, include_url=False)
    ]


def _unset(field: str, given: dict[str, Any]) -> bool:
    """No value for `field` anywhere it may come from (the environment, .env, a flag)."""
    name = env_name(field)
    return field not in given and not os.environ.get(name) and not _env_file().get(name)


def _env_file(path: str = ".env") -> dict[str, str | None]:
    return dotenv_values(path) if Path(path).is_file() else {}


# What botocore reads from the environment itself; set in .env, it is exported, never
# over a variable the environment already has.
_EXPORTED = re.compile(r"AWS_[A-Z0-9_]+|REQUESTS_CA_BUNDLE|(?i:https?_proxy|no_proxy)")


def export_aws_settings(path: str = ".env") -> None:
    for name, value in _env_file(path).items():
        if value is not None and _EXPORTED.fullmatch(name) and name not in os.environ:
            os.environ[name] = value


def _check_postgres_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("must be a postgresql:// URL")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("has an invalid port") from None
    if not parts.netloc and "host=" not in parts.query:
        raise ValueError("names no host (postgresql://user@host:5432/dbname)")
