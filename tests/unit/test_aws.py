"""The AWS settings as botocore resolves them, for both clients (aiobotocore's, and the
direct one's resolution through botocore in a thread): a refresh of refused credentials
happens once however many calls were refused with them; static keys that expired stop
the service; a refresh by botocore's blocking providers happens off the event loop; the
CA bundle botocore would use (AWS_CA_BUNDLE, else REQUESTS_CA_BUNDLE) is the direct
client's too, and one that cannot be read is a bad setting; the service models load
from where botocore loads them, without its walk of every service."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import botocore.loaders
import pytest
import trustme
from aiobotocore.credentials import AioCredentials, AioRefreshableCredentials
from botocore.credentials import Credentials as BotocoreCredentials
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import UnknownServiceError
from botocore.loaders import Loader

from ingestor import __version__
from ingestor.errors import ConfigError, QueueError, StaleCredentials
from ingestor.source.aws import Credentials, Route, ThreadedCredentials, in_thread, resolve_aws
from ingestor.source.awsdata import ModelLoader
from ingestor.source.sqs import open_aws

EXPIRED = StaleCredentials("SQS refused the credentials as expired", expired=True)
pytestmark = pytest.mark.usefixtures("example_aws_keys")


class Provider:
    """An identity provider that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

        self.threads: set[int] = set()

    async def fetch(self) -> dict[str, str]:
        await asyncio.sleep(0.01)  # a round trip to STS
        return self.fetch_blocking()

    def fetch_blocking(self) -> dict[str, str]:
        """As botocore's own providers fetch: a blocking call."""
        self.calls += 1
        self.threads.add(threading.get_ident())
        time.sleep(0.01)  # a round trip to STS
        expiry = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        return {
            "access_key": f"AKID{self.calls}",
            "secret_key": "secret",
            "token": "token",
            "expiry_time": expiry.isoformat(),
        }


async def test_calls_refused_together_refresh_the_credentials_once() -> None:
    provider = Provider()
    resolved = AioRefreshableCredentials.create_from_metadata(
        await provider.fetch(), refresh_using=provider.fetch, method="test"
    )
    credentials = Credentials(resolved)
    used = await credentials.frozen()
    await asyncio.gather(*(credentials.refresh(used, EXPIRED) for _ in range(48)))
    assert provider.calls == 2  # the first load, and one refresh
    assert (await credentials.frozen()).access_key == "AKID2"


async def test_threaded_calls_refused_together_refresh_the_credentials_once() -> None:
    provider = Provider()
    resolved = RefreshableCredentials.create_from_metadata(
        provider.fetch_blocking(), refresh_using=provider.fetch_blocking, method="test"
    )
    credentials = ThreadedCredentials(resolved)
    used = await credentials.frozen()
    provider.threads.clear()
    await asyncio.gather(*(credentials.refresh(used, EXPIRED) for _ in range(48)))
    assert provider.calls == 2  # the first load, and one refresh
    assert (await credentials.frozen()).access_key == "AKID2"
    assert provider.threads
    assert threading.get_ident() not in provider.threads


def expiring(provider: Provider, minutes: float) -> RefreshableCredentials:
    """botocore credentials that expire in `minutes`, refreshed by `provider`."""
    first = provider.fetch_blocking()
    first["expiry_time"] = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)).isoformat()
    return RefreshableCredentials.create_from_metadata(
        first, refresh_using=provider.fetch_blocking, method="test"
    )


async def test_a_refresh_that_is_due_runs_off_the_event_loop() -> None:
    # Given credentials inside botocore's refresh window (it refreshes 15 minutes early)
    provider = Provider()
    credentials = ThreadedCredentials(expiring(provider, minutes=5))
    provider.threads.clear()
    # When a call takes them, then botocore's blocking refresh ran in another thread
    assert (await credentials.frozen()).access_key == "AKID2"
    assert provider.calls == 2
    assert provider.threads
    assert threading.get_ident() not in provider.threads


async def test_credentials_between_refreshes_are_taken_without_a_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = Provider()
    credentials = ThreadedCredentials(expiring(provider, minutes=50))

    def no_thread(*_: Any) -> Any:
        raise AssertionError("a thread for credentials that are not due a refresh")

    monkeypatch.setattr(asyncio, "to_thread", no_thread)
    assert (await credentials.frozen()).access_key == "AKID1"
    assert provider.calls == 1


@pytest.mark.parametrize(
    "credentials",
    [
        Credentials(AioCredentials("AKID", "secret", "an-expired-session-token")),
        ThreadedCredentials(BotocoreCredentials("AKID", "secret", "an-expired-session-token")),
    ],
    ids=["aiobotocore", "botocore"],
)
async def test_static_keys_that_expired_stop_the_service(
    credentials: Credentials | ThreadedCredentials,
) -> None:
    with pytest.raises(QueueError, match="cannot be refreshed"):
        await credentials.refresh(await credentials.frozen(), EXPIRED)
    # a clock problem with static keys is retried: the host's clock may be put right
    skew = StaleCredentials("SQS refused the signature: the host's clock is off?")
    await credentials.refresh(await credentials.frozen(), skew)


OPENERS = ["aiobotocore", "botocore"]


async def route_by(opener: str) -> Route:
    """The route as the aiobotocore client resolves it, or as the direct client's
    resolution (botocore, in a thread) does."""
    if opener == "aiobotocore":
        async with open_aws("eu-west-1", None, 2) as aws:
            return aws.route
    return (await resolve_aws("eu-west-1", None, 2)).route


@pytest.mark.parametrize("opener", OPENERS)
def test_requests_ca_bundle_is_trusted_as_botocore_trusts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opener: str
) -> None:
    authority = trustme.CA(organization_name="ingestor test corporate CA")
    bundle = tmp_path / "corporate.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    tls = asyncio.run(route_by(opener)).tls
    assert tls is not None
    subjects = [str(cert["subject"]) for cert in tls.get_ca_certs()]
    assert any("ingestor test corporate CA" in subject for subject in subjects)


@pytest.mark.parametrize("opener", OPENERS)
def test_a_ca_bundle_that_cannot_be_read_is_a_bad_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opener: str
) -> None:
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError) as caught:
        asyncio.run(route_by(opener))
    assert caught.value.variable == "AWS_CA_BUNDLE"
    assert "missing.pem" in caught.value.problem


@pytest.mark.parametrize("opener", OPENERS)
def test_both_resolve_the_same_route_and_user_agent(
    monkeypatch: pytest.MonkeyPatch, opener: str
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://user:pass@proxy.example:3128")
    route = asyncio.run(route_by(opener))
    other = asyncio.run(route_by(next(o for o in OPENERS if o != opener)))
    assert (route.url, route.region, route.proxy, route.proxy_headers) == (
        other.url, other.region, other.proxy, other.proxy_headers,
    )  # fmt: skip
    assert route.url == "https://sqs.eu-west-1.amazonaws.com/"
    assert route.proxy == "http://proxy.example:3128"
    # botocore's identification of the platform, and the service's name, in both (each
    # names the library that resolved it: botocore, or aiobotocore on botocore)
    platform = "ua/2.1 " + route.user_agent.split(" ua/2.1 ", 1)[1].split(" cfg/", 1)[0]
    assert platform in other.user_agent
    assert route.user_agent.endswith(f" ingestor/{__version__}")


# -- the service models: found without listing every service botocore ships -------------


def test_the_models_load_as_botocore_s_own_loader_loads_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listed: list[str] = []
    listdir = os.listdir

    def counting(path: str) -> list[str]:
        listed.append(path)
        return listdir(path)

    monkeypatch.setattr(botocore.loaders.os, "listdir", counting)
    kinds = ("service-2", "endpoint-rule-set-1")
    theirs = [Loader().load_service_model("sqs", kind) for kind in kinds]
    walked, listed[:] = len(listed), []
    ours = [ModelLoader().load_service_model("sqs", kind) for kind in kinds]
    assert ours == theirs
    assert walked > 800  # botocore's loader lists every service's folder, for each kind
    assert listed  # ours looks in sqs's own folder, and nowhere else
    assert all(path.endswith(os.sep + "sqs") for path in listed)


def test_botocore_s_data_files_read_as_plain_dicts_in_the_same_order() -> None:
    ours, theirs = ModelLoader().load_data("endpoints"), Loader().load_data("endpoints")
    assert type(ours) is dict
    assert ours == theirs
    assert json.dumps(ours) == json.dumps(theirs)  # the same order too, all the way down


def test_an_unknown_service_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(UnknownServiceError) as refused:
        ModelLoader().load_service_model("no-such-service", "service-2")
    assert "sqs" in str(refused.value)


def test_aws_data_path_is_searched_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "models" / "sqs" / "2012-11-05"
    own.mkdir(parents=True)
    model = Loader().load_service_model("sqs", "service-2")
    model["metadata"]["serviceFullName"] = "SQS as patched in AWS_DATA_PATH"
    (own / "service-2.json").write_text(json.dumps(model))
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path / "models"))

    async def loaded() -> str:
        async with open_aws("eu-west-1", None, 2) as aws:
            assert isinstance(aws.client._loader, ModelLoader)
            return str(aws.client.meta.service_model.metadata["serviceFullName"])

    assert asyncio.run(loaded()) == "SQS as patched in AWS_DATA_PATH"


def test_aws_data_path_is_searched_first_by_the_direct_client_s_resolution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = tmp_path / "models" / "sqs" / "2012-11-05"
    own.mkdir(parents=True)
    model = Loader().load_service_model("sqs", "service-2")
    model["metadata"]["endpointPrefix"] = "sqs-as-patched"  # the route's host comes from it
    (own / "service-2.json").write_text(json.dumps(model))
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path / "models"))
    route = asyncio.run(route_by("botocore"))
    assert route.url == "https://sqs-as-patched.eu-west-1.amazonaws.com/"


# -- blocking botocore calls: in a daemon thread each, one refresh at a time ------------


def test_a_blocking_call_that_hangs_holds_up_neither_the_loop_nor_the_exit() -> None:
    entered, release = threading.Event(), threading.Event()
    ran_in: list[threading.Thread] = []

    def hangs() -> str:
        ran_in.append(threading.current_thread())
        entered.set()
        release.wait()  # an identity provider that never answers
        return "never used"

    async def caller() -> None:
        waiting = asyncio.create_task(in_thread(hangs))
        await asyncio.to_thread(entered.wait, 10)
        waiting.cancel()  # (a stop): the caller goes, the thread hangs on
        with pytest.raises(asyncio.CancelledError):
            await waiting

    # asyncio.run waits for the default executor's threads: not for this one
    finished = threading.Thread(target=asyncio.run, args=(caller(),), daemon=True)
    finished.start()
    finished.join(timeout=30)
    try:
        assert not finished.is_alive(), "asyncio.run waited for the hung call"
        [thread] = ran_in
        assert thread.is_alive()  # still hung: a daemon thread, which no exit waits for
        assert thread.daemon
    finally:
        release.set()


async def test_calls_waiting_for_a_refresh_wait_on_the_loop_not_in_threads() -> None:
    # Given credentials in botocore's mandatory window and an identity provider that is slow
    entered, release = threading.Event(), threading.Event()
    provider = Provider()
    resolved = expiring(provider, minutes=5)

    def slow() -> dict[str, str]:
        entered.set()
        release.wait(30)
        return provider.fetch_blocking()

    resolved._refresh_using = slow
    credentials = ThreadedCredentials(resolved)
    before = set(threading.enumerate())
    # When 30 calls need them at once
    calls = [asyncio.create_task(credentials.frozen()) for _ in range(30)]
    await asyncio.to_thread(entered.wait, 10)
    # Then one thread refreshes; the other calls wait on the loop (the default executor,
    # which resolves host names for the database and SQS, is left free)
    refreshing = [t for t in set(threading.enumerate()) - before if t.name == "ingestor-aws"]
    release.set()
    keys = {frozen.access_key for frozen in await asyncio.gather(*calls)}
    assert len(refreshing) == 1
    assert keys == {"AKID2"}
    assert provider.calls == 2


@pytest.mark.parametrize("opener", OPENERS)
@pytest.mark.parametrize(
    ("variable", "setting"),
    [
        ("AWS_PROFILE", {"AWS_PROFILE": "no-such-profile"}),
        ("AWS_REGION", {"AWS_REGION": "us east 1"}),
        ("the SQS endpoint", {"AWS_ENDPOINT_URL_SQS": "::not a url"}),
    ],
)
def test_a_setting_botocore_refuses_is_a_bad_setting_naming_it(
    monkeypatch: pytest.MonkeyPatch, opener: str, variable: str, setting: dict[str, str]
) -> None:
    for name, value in setting.items():
        monkeypatch.setenv(name, value)
    region = setting.get("AWS_REGION")

    async def opened() -> None:
        if opener == "aiobotocore":
            async with open_aws(region, None, 2):
                pass
        else:
            await resolve_aws(region, None, 2)

    with pytest.raises(ConfigError) as refused:
        asyncio.run(opened())
    assert refused.value.variable.startswith(variable)


@pytest.mark.parametrize("opener", OPENERS)
def test_a_failing_credential_process_s_output_is_not_repeated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opener: str
) -> None:
    # A helper that fails may print what it holds: the error names the provider only
    config = tmp_path / "config"
    config.write_text(
        '[profile helper]\ncredential_process = sh -c "echo token=SECRET-abc123 >&2; exit 1"\n'
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_PROFILE", "helper")

    async def opened() -> None:
        if opener == "aiobotocore":
            async with open_aws("eu-west-1", None, 2) as aws:
                await aws.credentials.frozen()
        else:
            await (await resolve_aws("eu-west-1", None, 2)).credentials.frozen()

    with pytest.raises(QueueError) as failed:
        asyncio.run(opened())
    assert "custom-process provider failed" in str(failed.value)
    assert "SECRET" not in str(failed.value)
