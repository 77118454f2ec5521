"""The AWS settings as botocore resolves them: a refresh of refused credentials happens
once however many calls were refused with them; static keys that expired stop the
service; the CA bundle botocore would use (AWS_CA_BUNDLE, else REQUESTS_CA_BUNDLE) is the
direct client's too, and one that cannot be read is a bad setting; the service models
load from where botocore loads them, without its walk of every service."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from pathlib import Path

import botocore.loaders
import pytest
import trustme
from aiobotocore.credentials import AioCredentials, AioRefreshableCredentials
from botocore.exceptions import UnknownServiceError
from botocore.loaders import Loader

from ingestor.errors import ConfigError, QueueError, StaleCredentials
from ingestor.source.aws import Credentials, open_aws
from ingestor.source.awsdata import ModelLoader

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
