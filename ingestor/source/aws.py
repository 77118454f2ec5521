"""The AWS settings as botocore resolves them, once per process, for both SQS clients.

An AWS tool honours the standard settings on every call: the credential chain (keys,
profiles, web identity, container and instance roles), the region, the endpoint
(partitions, FIPS, dual-stack, `AWS_ENDPOINT_URL_SQS`), `HTTPS_PROXY`/`NO_PROXY` and
`AWS_CA_BUNDLE`. aiobotocore resolves them; the direct client (`sqs_wire.py`) takes what
it resolved instead of working any of it out again, so the two cannot route differently.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.httpsession import ProxyConfiguration, get_cert_path
from botocore.utils import get_environ_proxies

from ingestor import __version__
from ingestor.errors import ConfigError, QueueError, QueueUnavailable, StaleCredentials
from ingestor.source.awsdata import model_loader
from ingestor.source.sqs_errors import describe

USER_AGENT_EXTRA = f"ingestor/{__version__}"
NO_CREDENTIALS = (
    "none found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run "
    "with a web identity (IRSA), a container or an instance role"
)
# The last resort for a region: only an SQS-compatible server (an emulator) gets here, as
# an AWS queue URL carries its own region.
FALLBACK_REGION = "us-east-1"


class Credentials:
    """The credentials botocore resolved, shared by both clients (one walk of the chain
    for the whole process, one refresh at a time). Every failure to get or refresh them
    is a `QueueUnavailable`: an identity provider that is down is retried like SQS."""

    __slots__ = ("_resolved",)

    def __init__(self, resolved: Any) -> None:
        self._resolved = resolved

    async def frozen(self) -> Any:
        """The current key, secret and token, refreshed first when they are about to
        expire."""
        try:
            return await self._resolved.get_frozen_credentials()
        except Exception as error:  # a provider raises whatever its source raised
            raise _unrefreshable(error) from None

    async def refresh(self, used: Any, refused: StaleCredentials) -> None:
        """SQS refused the credentials `used` (expired, or signed with a clock that is
        off): refresh them now, once for all the calls that were refused with them.
        Credentials that cannot be refreshed (static keys) and have expired stop the
        service: no retry will make them valid."""
        # botocore refreshes on time only; a revoked session or a skewed clock needs it
        # now. `_protected_refresh` is how its own mandatory refresh does it.
        refresh = getattr(self._resolved, "_protected_refresh", None)
        lock = getattr(self._resolved, "_refresh_lock", None)
        if refresh is None or lock is None:
            if refused.expired:
                raise QueueError(
                    f"{refused} and they cannot be refreshed (static keys): set new ones"
                )
            return
        try:
            async with lock:  # (its own lock: get_frozen_credentials would wait for it)
                if getattr(self._resolved, "_frozen_credentials", None) == used:
                    await refresh(is_mandatory=True)  # not refreshed since they were used
        except Exception as error:
            raise _unrefreshable(error) from None


def _unrefreshable(error: BaseException) -> QueueUnavailable:
    return QueueUnavailable(f"AWS credentials could not be refreshed ({describe(error)})")


@dataclass(frozen=True)
class Route:
    """Where and how the direct client sends its calls: what aiobotocore resolved."""

    url: str  # the endpoint, with the path '/'
    region: str
    user_agent: str
    proxy: str | None = None
    proxy_headers: dict[str, str] = field(default_factory=dict)
    tls: ssl.SSLContext | None = None  # None for an http:// endpoint


@dataclass(frozen=True)
class Aws:
    """One aiobotocore SQS client and what it resolved."""

    client: Any
    credentials: Credentials
    route: Route


def client_config(max_connections: int, user_agent: str | None = None) -> AioConfig:
    """An aiobotocore client tuned for a hot loop: no client-side parameter validation
    (the calls are built here, not typed by users); botocore's retries off (ours apply:
    one policy, not a retry inside a retry); checksums only where an API requires them
    (SQS's JSON calls have none to require); and the user agent worked out once (botocore
    rebuilds it for every request otherwise, character by character: about a tenth of
    the fallback path's CPU), with the service's name in it."""
    return AioConfig(
        parameter_validation=False,
        max_pool_connections=max_connections,
        connect_timeout=5,
        read_timeout=30,  # longer than the longest long poll (20 s)
        retries={"total_max_attempts": 1, "mode": "standard"},
        user_agent=user_agent,
        user_agent_extra=USER_AGENT_EXTRA,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


def identification(session: AioSession) -> str | None:
    """botocore's identification of this client (SDK, language, OS and machine), as it
    builds it for a request, without the extras it appends after it itself; None if
    botocore's user-agent API (its own, and private) is not as expected."""
    try:
        from botocore.useragent import UserAgentString  # noqa: PLC0415

        base = UserAgentString.from_environment().set_session_config(
            session.user_agent_name, session.user_agent_version, None
        )
        plain = AioConfig(retries={"mode": "standard"})  # no extra: botocore appends it
        return str(base.with_client_config(plain).to_string())
    except Exception:  # another botocore: its own user agent, rebuilt per request
        return None


@asynccontextmanager
async def open_aws(
    region: str | None, endpoint_url: str | None, max_connections: int
) -> AsyncIterator[Aws]:
    """Resolve the credential chain once, create the SQS client, and work out the direct
    client's route from it. No credentials at all is a `ConfigError` (exit 2)."""
    session = get_session()
    session.register_component("data_loader", model_loader(session))  # awsdata.py: why
    credentials = await _credentials(session)
    region = region or session.get_config_variable("region") or FALLBACK_REGION
    config = client_config(max_connections, identification(session))
    async with session.create_client(
        "sqs", region_name=region, endpoint_url=endpoint_url, config=config
    ) as client:
        route = await asyncio.to_thread(_route, client, session)  # reads a CA bundle file
        yield Aws(client, Credentials(credentials), route)


async def _credentials(session: AioSession) -> Any:
    try:
        resolved = await session.get_credentials()
    except Exception as error:  # a profile or credential_process that fails to load
        raise QueueError(f"AWS credentials could not be loaded ({describe(error)})") from None
    if resolved is None:
        raise ConfigError("AWS credentials", NO_CREDENTIALS)
    return resolved


def _route(client: Any, session: AioSession) -> Route:
    endpoint = str(client.meta.endpoint_url)
    parts = urlsplit(endpoint)
    url = urlunsplit(parts._replace(path=parts.path or "/"))
    proxy, proxy_headers = _proxy_for(client, url)
    return Route(
        url=url,
        region=str(client.meta.region_name),
        user_agent=_user_agent(client),
        proxy=proxy,
        proxy_headers=proxy_headers,
        tls=_tls(session) if parts.scheme == "https" else None,
    )


def _proxy_for(client: Any, url: str) -> tuple[str | None, dict[str, str]]:
    """The proxy botocore would use for `url`: the client's configured proxies, else the
    environment's (HTTPS_PROXY, HTTP_PROXY), unless NO_PROXY says to bypass it."""
    config = client.meta.config
    proxies = config.proxies or get_environ_proxies(url)
    proxying = ProxyConfiguration(proxies=proxies, proxies_settings=config.proxies_config)
    proxy = proxying.proxy_url_for(url)
    if not proxy:
        return None, {}
    headers = dict(proxying.proxy_headers_for(proxy))  # Proxy-Authorization from user:pass@
    parts = urlsplit(proxy)
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return bare, headers


def _tls(session: AioSession) -> ssl.SSLContext:
    """Certificate checks as botocore makes them: AWS_CA_BUNDLE (or a profile's
    ca_bundle), else REQUESTS_CA_BUNDLE, else the bundle botocore ships with. A bundle
    that cannot be read is a bad setting."""
    configured = session.get_config_variable("ca_bundle")
    variable = "AWS_CA_BUNDLE" if configured else "REQUESTS_CA_BUNDLE"
    verify = configured or os.environ.get("REQUESTS_CA_BUNDLE") or True
    try:
        return ssl.create_default_context(cafile=get_cert_path(verify))
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(
            variable, f"{verify} cannot be read as a CA bundle ({describe(error)})"
        ) from None


def _user_agent(client: Any) -> str:
    """The user agent aiobotocore sends (botocore's identification, with ingestor's
    name in it), so SQS's side sees one client whichever path a call takes."""
    creator = getattr(client, "_user_agent_creator", None)
    if creator is not None:
        return str(creator.to_string())
    import botocore  # noqa: PLC0415 - only for an aiobotocore without a user agent creator

    return f"botocore/{botocore.__version__} {USER_AGENT_EXTRA}"
