"""SigV4 for the direct client's requests, as botocore's `SigV4Auth` signs them, byte for
byte, without its per-request machinery.

Why: botocore builds an `AWSRequest`, splits the URL, sorts and trims every header, and
derives the signing key (four HMACs) for each request: 52 µs a request, 28% of the
service's CPU time draining a queue. The direct client sends one shape only (a POST of a
JSON body to one endpoint, the same headers but the target), so what does not change is
worked out once: the path, query and host from the endpoint; and, per date and
credentials, the signing key, the credential scope and the canonical headers around the
two that vary (the time and the target). A request then costs a SHA-256 of its body, one
of its canonical request and one HMAC: 6 µs.

Credentials are passed with each request, as `aws.Credentials.frozen` returns them
(refreshed by botocore when due): a signature is never made with credentials other than
the ones given, and a new key, secret, token or date derives a new key.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from botocore.auth import SIGNED_HEADERS_BLACKLIST
from botocore.utils import is_valid_ipv6_endpoint_url, normalize_url_path

ALGORITHM = "AWS4-HMAC-SHA256"
DATE = "X-Amz-Date"
TOKEN = "X-Amz-Security-Token"  # noqa: S105 - a header name
TARGET = "X-Amz-Target"
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class _Scope:
    """What one set of credentials signs with on one date."""

    identity: tuple[str, str, str, str]  # date, access key, secret key, token
    key: bytes  # the signing key
    scope: str  # date/region/service/aws4_request
    authorization: str  # the Authorization header up to the signature
    canonical: str  # the canonical request, with {0} the time, {1} the target, {2} the hash
    token: str


class Signer:
    """Signs POSTs of a body to `url`, with `headers` (the same on every request) and an
    `X-Amz-Target`, as `SigV4Auth(credentials, service, region)` would."""

    __slots__ = (
        "_clock",
        "_fixed",
        "_region",
        "_request",
        "_scope",
        "_second",
        "_service",
        "_stamp",
        "_static",
        "_targets",
    )

    def __init__(
        self,
        url: str,
        region: str,
        service: str,
        headers: Mapping[str, str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._region = region
        self._service = service
        self._static = dict(headers)
        self._fixed = _signed_headers(headers, url)
        self._request = _escaped(f"POST\n{_canonical_path(url)}\n{_canonical_query(url)}\n")
        self._clock = clock
        self._scope: _Scope | None = None
        self._second = -1
        self._stamp = ""
        self._targets: dict[str, str] = {}  # target -> its canonical value

    def headers(self, target: str, body: bytes, credentials: Any) -> dict[str, str]:
        """The request's headers, signed: the static ones, the target, the time, the
        session token when there is one, and the Authorization."""
        stamp = self._timestamp()
        scope = self._scope_for(stamp[:8], credentials)
        canonical = scope.canonical.format(
            stamp, self._canonical_target(target), hashlib.sha256(body).hexdigest()
        )
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        to_sign = f"{ALGORITHM}\n{stamp}\n{scope.scope}\n{digest}"
        signature = hmac.digest(scope.key, to_sign.encode(), "sha256").hex()
        headers = {**self._static, TARGET: target, DATE: stamp}
        if scope.token:
            headers[TOKEN] = scope.token
        headers["Authorization"] = scope.authorization + signature
        return headers

    def _timestamp(self) -> str:
        """The time as SigV4 writes it (whole seconds, UTC), formatted once a second."""
        second = int(self._clock())
        if second != self._second:
            self._stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
            self._second = second
        return self._stamp

    def _scope_for(self, date: str, credentials: Any) -> _Scope:
        identity = (date, credentials.access_key, credentials.secret_key, credentials.token or "")
        scope = self._scope
        if scope is None or scope.identity != identity:
            scope = self._scope = self._derive(identity)
        return scope

    def _derive(self, identity: tuple[str, str, str, str]) -> _Scope:
        date, access_key, secret_key, token = identity
        key = f"AWS4{secret_key}".encode()
        for part in (date, self._region, self._service, "aws4_request"):
            key = hmac.digest(key, part.encode(), "sha256")
        scope = f"{date}/{self._region}/{self._service}/aws4_request"
        lines = {**self._fixed, "x-amz-date": "{0}", "x-amz-target": "{1}"}
        if token:
            lines["x-amz-security-token"] = _escaped(_trimmed(token))
        names = sorted(lines)
        signed = ";".join(names)
        headers = "".join(f"{name}:{lines[name]}\n" for name in names)
        return _Scope(
            identity=identity,
            key=key,
            scope=scope,
            authorization=(
                f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={signed}, Signature="
            ),
            canonical=f"{self._request}{headers}\n{signed}\n{{2}}",
            token=token,
        )

    def _canonical_target(self, target: str) -> str:
        canonical = self._targets.get(target)
        if canonical is None:
            canonical = self._targets[target] = _trimmed(target)
        return canonical


def _signed_headers(headers: Mapping[str, str], url: str) -> dict[str, str]:
    """The static headers SigV4 signs, by lower-case name, their values trimmed and made
    safe for `str.format`; with the host when no Host header is sent."""
    lines = {
        name.lower(): _escaped(_trimmed(value))
        for name, value in headers.items()
        if name.lower() not in SIGNED_HEADERS_BLACKLIST
    }
    lines.setdefault("host", _escaped(_host(url)))
    return lines


def _trimmed(value: str) -> str:
    """SigV4's Trimall: no space around, runs of white space made one space."""
    return " ".join(value.split())


def _escaped(value: str) -> str:
    return value.replace("{", "{{").replace("}", "}}")


def _host(url: str) -> str:
    """The host as botocore signs it: lower case, IPv6 in brackets, the port unless it is
    the scheme's own, no user info."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if is_valid_ipv6_endpoint_url(url):
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def _canonical_path(url: str) -> str:
    return quote(normalize_url_path(urlsplit(url).path), safe="/~")


def _canonical_query(url: str) -> str:
    """The endpoint's own query, if it has one, sorted as botocore sorts it."""
    query = urlsplit(url).query
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&")) if query else []
    return "&".join(f"{key}={value}" for key, value in pairs)
