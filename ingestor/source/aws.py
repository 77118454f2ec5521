"""The AWS settings as botocore resolves them, once per process, for both SQS clients.

An AWS tool honours the standard settings on every call: the credential chain (keys,
profiles, web identity, container and instance roles), the region, the endpoint
(partitions, FIPS, dual-stack, `AWS_ENDPOINT_URL_SQS`), `HTTPS_PROXY`/`NO_PROXY` and
`AWS_CA_BUNDLE`. botocore resolves them; the direct client (`sqs_wire.py`) takes what it
resolved instead of working any of it out again, so the two clients cannot route
differently: aiobotocore's (`sqs.py`) is botocore's resolution too.

The direct client's resolution uses botocore itself, in a thread, not aiobotocore:
importing aiobotocore (and aiohttp with it, which builds its TLS contexts at import) was
about a third of the service's start-up, for a client the run does not call.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from botocore.config import Config
from botocore.exceptions import (
    ConfigParseError,
    CredentialRetrievalError,
    InvalidRegionError,
    ProfileNotFound,
)
from botocore.httpsession import ProxyConfiguration, get_cert_path
from botocore.session import Session
from botocore.utils import get_environ_proxies

from ingestor import __version__
from ingestor.errors import (
    ConfigError,
    IngestorError,
    QueueError,
    QueueUnavailable,
    StaleCredentials,
)
from ingestor.source.awsdata import model_loader
from ingestor.source.sqs_errors import describe
from ingestor.terminal import printable

T = TypeVar("T")

USER_AGENT_EXTRA = f"ingestor/{__version__}"
NO_CREDENTIALS = (
    "none found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run "
    "with a web identity (IRSA), a container or an instance role"
)
# The last resort for a region: only an SQS-compatible server (an emulator) gets here, as
# an AWS queue URL carries its own region.
FALLBACK_REGION = "us-east-1"


class CredentialSource(Protocol):
    """Where a client gets the credentials it signs with (either client's)."""

    async def frozen(self) -> Any:
        """The current key, secret and token, refreshed first when they are about to
        expire."""

    async def refresh(self, used: Any, refused: StaleCredentials) -> None:
        """SQS refused the credentials `used` (expired, or signed with a clock that is
        off): refresh them now, once for all the calls that were refused with them.
        Credentials that cannot be refreshed (static keys) and have expired stop the
        service: no retry will make them valid."""


class _Refreshable:
    """What both kinds of credentials share: a forced refresh of refused credentials,
    once for all the calls refused with them, every failure a `QueueUnavailable`."""

    __slots__ = ("_resolved",)

    def __init__(self, resolved: Any) -> None:
        self._resolved = resolved

    async def refresh(self, used: Any, refused: StaleCredentials) -> None:
        # botocore refreshes on time only; a revoked session or a skewed clock needs it
        # now. `_protected_refresh` is how its own mandatory refresh does it, under its
        # own lock (get_frozen_credentials would wait for it).
        refresh, lock = _refresher(self._resolved, refused)
        if refresh is None:
            return
        try:
            await self._forced(refresh, lock, used)
        except Exception as error:
            raise _unrefreshable(error) from None

    async def _forced(self, refresh: Any, lock: Any, used: Any) -> None:
        """Run `refresh(is_mandatory=True)` under `lock` unless they changed since `used`."""
        raise NotImplementedError

    def _unchanged(self, used: Any) -> bool:
        return bool(getattr(self._resolved, "_frozen_credentials", None) == used)


class Credentials(_Refreshable):
    """The credentials aiobotocore resolved (one walk of the chain for the whole process,
    one refresh at a time). Every failure to get or refresh them is a
    `QueueUnavailable`: an identity provider that is down is retried like SQS."""

    __slots__ = ()

    async def frozen(self) -> Any:
        try:
            return await self._resolved.get_frozen_credentials()
        except Exception as error:  # a provider raises whatever its source raised
            raise _unrefreshable(error) from None

    async def _forced(self, refresh: Any, lock: Any, used: Any) -> None:
        async with lock:
            if self._unchanged(used):
                await refresh(is_mandatory=True)


class ThreadedCredentials(_Refreshable):
    """The credentials botocore resolved, as `Credentials` does for aiobotocore's. A
    refresh (STS, the instance or container endpoint, a credential_process: blocking
    calls in botocore) runs in a thread of its own, one at a time: the calls that need
    it meanwhile wait on the event loop, not in threads, and a refresh that hangs holds
    neither the loop's default executor (its DNS look-ups) nor the process's exit. A
    signature between refreshes takes the frozen credentials as they are."""

    __slots__ = ("_one_at_a_time",)

    def __init__(self, resolved: Any) -> None:
        super().__init__(resolved)
        self._one_at_a_time = asyncio.Lock()

    async def frozen(self) -> Any:
        try:
            if _refresh_due(self._resolved):
                async with self._one_at_a_time:  # then due still, unless another did it
                    if _refresh_due(self._resolved):
                        return await in_thread(self._resolved.get_frozen_credentials)
            return self._resolved.get_frozen_credentials()
        except Exception as error:  # a provider raises whatever its source raised
            raise _unrefreshable(error) from None

    async def _forced(self, refresh: Any, lock: Any, used: Any) -> None:
        def refresh_if_unchanged() -> None:
            with lock:
                if self._unchanged(used):
                    refresh(is_mandatory=True)

        async with self._one_at_a_time:
            await in_thread(refresh_if_unchanged)


async def in_thread(work: Callable[[], T]) -> T:
    """`work()` (a blocking botocore call) in a daemon thread of its own. Not the loop's
    default executor: `asyncio.run` waits for that one's threads before it returns, so
    an identity provider that hangs would hold up even a second signal's exit."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if outcome.done():  # the caller was cancelled meanwhile
            return
        if error is not None:
            outcome.set_exception(error)
        else:
            outcome.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        result, error = None, None
        try:
            result = work()
        except BaseException as raised:  # handed to the caller, whatever it is
            error = raised
        with suppress(RuntimeError):  # the loop has closed: nobody waits for this any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="ingestor-aws", daemon=True).start()
    return await outcome


# botocore's own margin: refreshable credentials refresh this long before they expire.
ADVISORY_REFRESH_SECONDS = 15 * 60


def _refresh_due(resolved: Any) -> bool:
    """Whether botocore's get_frozen_credentials would refresh now (with a minute to
    spare): only then does it block."""
    needed = getattr(resolved, "refresh_needed", None)
    if needed is None:
        return False  # static keys
    margin = getattr(resolved, "_advisory_refresh_timeout", ADVISORY_REFRESH_SECONDS)
    return bool(needed(margin + 60))


def _refresher(resolved: Any, refused: StaleCredentials) -> tuple[Any, Any]:
    """botocore's mandatory refresh and its lock; (None, None) for credentials that
    cannot be refreshed, whose expiry stops the service."""
    refresh = getattr(resolved, "_protected_refresh", None)
    lock = getattr(resolved, "_refresh_lock", None)
    if refresh is not None and lock is not None:
        return refresh, lock
    if refused.expired:
        raise QueueError(f"{refused} and they cannot be refreshed (static keys): set new ones")
    return None, None


def _unrefreshable(error: BaseException) -> QueueUnavailable:
    return QueueUnavailable(f"AWS credentials could not be refreshed ({_said(error)})")


def _said(error: BaseException) -> str:
    """A credential provider's failure in a few words. A credential_process's own output
    is left out: a helper that fails may print what it holds."""
    if isinstance(error, CredentialRetrievalError):
        provider = printable(str(error.kwargs.get("provider", "credential")), 64)
        return f"the {provider} provider failed; its output is not shown, as it may hold secrets"
    return describe(error)


@dataclass(frozen=True)
class Route:
    """Where and how the direct client sends its calls: what botocore resolved."""

    url: str  # the endpoint, with the path '/'
    region: str
    user_agent: str
    proxy: str | None = None
    proxy_headers: dict[str, str] = field(default_factory=dict)
    tls: ssl.SSLContext | None = None  # None for an http:// endpoint


@dataclass(frozen=True)
class Resolved:
    """What the direct client needs: the credentials and the route."""

    credentials: CredentialSource
    route: Route


@dataclass(frozen=True)
class Aws(Resolved):
    """One aiobotocore SQS client and what it resolved."""

    client: Any


def client_config(
    max_connections: int, user_agent: str | None = None, kind: type[Config] = Config
) -> Any:
    """A client tuned for a hot loop (`kind`: botocore's `Config`, or aiobotocore's):
    no client-side parameter validation (the calls are built here, not typed by users);
    botocore's retries off (ours apply: one policy, not a retry inside a retry);
    checksums only where an API requires them (SQS's JSON calls have none to require);
    and the user agent worked out once (botocore rebuilds it for every request
    otherwise, character by character: about a tenth of the fallback path's CPU), with
    the service's name in it."""
    return kind(
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


def identification(session: Session) -> str | None:
    """botocore's identification of this client (SDK, language, OS and machine), as it
    builds it for a request, without the extras it appends after it itself; None if
    botocore's user-agent API (its own, and private) is not as expected."""
    try:
        from botocore.useragent import UserAgentString  # noqa: PLC0415

        base = UserAgentString.from_environment().set_session_config(
            session.user_agent_name, session.user_agent_version, None
        )
        plain = Config(retries={"mode": "standard"})  # no extra: botocore appends it
        return str(base.with_client_config(plain).to_string())
    except Exception:  # another botocore: its own user agent, rebuilt per request
        return None


def prepare(session: Session) -> Session:
    """`session` reading botocore's data files the quick way (awsdata.py: why)."""
    session.register_component("data_loader", model_loader(session))
    return session


def region_of(session: Session, region: str | None) -> str:
    return region or session.get_config_variable("region") or FALLBACK_REGION


def loaded(resolved: Any) -> Any:
    """The chain's answer; none at all is a `ConfigError` (exit 2)."""
    if resolved is None:
        raise ConfigError("AWS credentials", NO_CREDENTIALS)
    return resolved


def unloadable(error: BaseException) -> IngestorError:
    """A profile or credential_process that fails to load; a setting botocore refuses
    (`bad_setting`) is a `ConfigError`."""
    return bad_setting(error) or QueueError(f"AWS credentials could not be loaded ({_said(error)})")


def bad_setting(error: BaseException) -> ConfigError | None:
    """An AWS setting botocore refused, as the setting to fix; None for other errors."""
    said = printable(str(error), 200)
    if isinstance(error, ProfileNotFound):
        return ConfigError("AWS_PROFILE", said)
    if isinstance(error, ConfigParseError):
        return ConfigError("AWS_CONFIG_FILE", said)
    if isinstance(error, InvalidRegionError):
        return ConfigError("AWS_REGION", said)
    if isinstance(error, ValueError) and said.startswith("Invalid endpoint"):
        endpoint = "INGESTOR_SQS_ENDPOINT_URL, AWS_ENDPOINT_URL_SQS or AWS_ENDPOINT_URL"
        return ConfigError(f"the SQS endpoint ({endpoint})", said)
    return None


@contextmanager
def settings_refused() -> Iterator[None]:
    """Setting up a session or a client: a setting botocore refuses is a `ConfigError`
    (exit 2), not a crash."""
    try:
        yield
    except Exception as error:
        mapped = bad_setting(error)
        if mapped is None:
            raise
        raise mapped from None


async def resolve_aws(
    region: str | None, endpoint_url: str | None, max_connections: int
) -> Resolved:
    """The credentials and the route, as botocore resolves them for an SQS client, in a
    thread: the chain may call an identity provider, and the CA bundle is a file."""
    return await in_thread(lambda: _resolve(region, endpoint_url, max_connections))


def _resolve(region: str | None, endpoint_url: str | None, max_connections: int) -> Resolved:
    with settings_refused():
        session = prepare(Session())
    try:
        credentials = session.get_credentials()
    except Exception as error:  # whatever the failing provider raised
        raise unloadable(error) from None
    config = client_config(max_connections, identification(session))
    with settings_refused():
        client = session.create_client(
            "sqs", region_name=region_of(session, region), endpoint_url=endpoint_url, config=config
        )
    try:
        return Resolved(ThreadedCredentials(loaded(credentials)), route_of(client, session))
    finally:
        client.close()


def route_of(client: Any, session: Session) -> Route:
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


def _tls(session: Session) -> ssl.SSLContext:
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
    """The user agent the client sends: botocore's identification (its name, or
    aiobotocore's on it, and the platform's), with ingestor's name in it."""
    creator = getattr(client, "_user_agent_creator", None)
    if creator is not None:
        return str(creator.to_string())
    import botocore  # noqa: PLC0415 - only for a client without a user agent creator

    return f"botocore/{botocore.__version__} {USER_AGENT_EXTRA}"
