"""An independent SigV4 check of a received request, as AWS's side does it (written from the
published algorithm, not from botocore): canonical request, string to sign, signing key,
signature. For tests of the direct client's signing."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import quote


def _sign(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signature_problem(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    secret_key: str,
) -> str | None:
    """None when the request's `Authorization` header is a valid SigV4 signature under
    `secret_key`; else what is wrong."""
    lower = {name.lower(): value for name, value in headers.items()}
    authorization = lower.get("authorization", "")
    if not authorization.startswith("AWS4-HMAC-SHA256 "):
        return "no SigV4 Authorization header"
    fields = dict(
        part.strip().split("=", 1)
        for part in authorization.removeprefix("AWS4-HMAC-SHA256 ").split(",")
    )
    scope = fields["Credential"].split("/", 1)[1]  # date/region/service/aws4_request
    signed = fields["SignedHeaders"].split(";")
    for required in ("host", "x-amz-date"):
        if required not in signed:
            return f"{required} is not signed"
    if "x-amz-security-token" in lower and "x-amz-security-token" not in signed:
        return "the session token is sent but not signed"
    canonical = "\n".join(
        [
            method,
            quote(path or "/", safe="/~"),
            "&".join(sorted(query.split("&"))) if query else "",
            "".join(f"{name}:{' '.join(lower[name].split())}\n" for name in signed),
            ";".join(signed),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            lower["x-amz-date"],
            scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    date, region, service, _ = scope.split("/")
    key = _sign(
        _sign(_sign(_sign(f"AWS4{secret_key}".encode(), date), region), service), "aws4_request"
    )
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return None if hmac.compare_digest(expected, fields["Signature"]) else "signature mismatch"
