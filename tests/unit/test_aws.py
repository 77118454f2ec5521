"""The AWS settings as botocore resolves them: a refresh of refused credentials happens
once however many calls were refused with them; static keys that expired stop the
service; the CA bundle botocore would use (AWS_CA_BUNDLE, else REQUESTS_CA_BUNDLE) is the
direct client's too, and one that cannot be read is a bad setting."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
import trustme
from aiobotocore.credentials import AioCredentials, AioRefreshableCredentials

from ingestor.errors import ConfigError, QueueError, StaleCredentials
from ingestor.source.aws import Credentials, open_aws

EXPIRED = StaleCredentials("SQS refused the credentials as expired", expired=True)
pytestmark = pytest.mark.usefixtures("example_aws_keys")


class Provider:
    """An identity provider that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def fetch(self) -> dict[str, str]:
        self.calls += 1
        await asyncio.sleep(0.01)  # a round trip to STS
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


async def test_static_keys_that_expired_stop_the_service() -> None:
    credentials = Credentials(AioCredentials("AKID", "secret", "an-expired-session-token"))
    with pytest.raises(QueueError, match="cannot be refreshed"):
        await credentials.refresh(await credentials.frozen(), EXPIRED)
    # a clock problem with static keys is retried: the host's clock may be put right
    skew = StaleCredentials("SQS refused the signature: the host's clock is off?")
    await credentials.refresh(await credentials.frozen(), skew)


def test_requests_ca_bundle_is_trusted_as_botocore_trusts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    authority = trustme.CA(organization_name="ingestor test corporate CA")
    bundle = tmp_path / "corporate.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))

    async def trusted() -> list[str]:
        async with open_aws("eu-west-1", None, 2) as aws:
            assert aws.route.tls is not None
            return [str(cert["subject"]) for cert in aws.route.tls.get_ca_certs()]

    subjects = asyncio.run(trusted())
    assert any("ingestor test corporate CA" in subject for subject in subjects)


def test_a_ca_bundle_that_cannot_be_read_is_a_bad_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "missing.pem"))

    async def opened() -> None:
        async with open_aws("eu-west-1", None, 2):
            pass

    with pytest.raises(ConfigError) as caught:
        asyncio.run(opened())
    assert caught.value.variable == "AWS_CA_BUNDLE"
    assert "missing.pem" in caught.value.problem
