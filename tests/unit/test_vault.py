"""The PII vault's keys and cryptography: key files and ids, sealing on the loader side,
opening with the private key, and the transform's vault entries."""

from __future__ import annotations

import base64
import datetime as dt
import os
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest
from nacl.bindings import crypto_box_seal_open
from nacl.exceptions import CryptoError

from ingestor.custody.keys import (
    KeyFileError,
    generate_key_pair,
    public_key_of,
    read_private_key,
    vault_key_id,
    write_private_key,
)
from ingestor.custody.vault import (
    Checker,
    EntryRefused,
    Opener,
    SealedError,
    Sealer,
    VaultingMasker,
    VaultMemory,
    framed,
)
from ingestor.errors import ConfigError, RowRejected
from ingestor.keytext import decode_key
from ingestor.models import VAULT_COLUMNS, Envelope, LoginRow, Processed, Rejection, VaultEntry
from ingestor.settings import load_settings
from ingestor.sink.isolation import refused_reject
from ingestor.table import canonical_ip
from ingestor.terminal import printable
from ingestor.transform.masking import HmacMasker, mask_key_id
from ingestor.transform.transformer import Transformer
from tests.fakes import SENT_MS
from tests.pii import expect_absent, expect_same

HMAC_KEY = b"v" * 32
IP, DEVICE = "198.51.100.23", "123-45-6789"
EVENT = {
    "user_id": "424cdd21-063a-43a7-b91b-7ca1a833afae",
    "app_version": "2.3.0",
    "device_type": "android",
    "ip": IP,
    "locale": "RU",
    "device_id": DEVICE,
}


@pytest.fixture(scope="module")
def key_pair() -> tuple[bytes, bytes]:
    return generate_key_pair()


@pytest.fixture
def sealer(key_pair: tuple[bytes, bytes]) -> Sealer:
    return Sealer(key_pair[1])


@pytest.fixture
def opener(key_pair: tuple[bytes, bytes]) -> Opener:
    return Opener(key_pair[0])


def vaulting(sealer: Sealer, cache_size: int = 100) -> VaultingMasker:
    return VaultingMasker(HMAC_KEY, sealer, cache_size)


def value_of(opener: Opener, entry: VaultEntry) -> str:
    """An entry's value as reveal gets it: opened, and checked against its token."""
    return opener.open_entry(as_row(entry), Checker(HMAC_KEY))


def as_row(entry: VaultEntry, **changes: Any) -> dict[str, Any]:
    """The entry as its pii_vault row reads, with `changes` made to it."""
    row = {name: getattr(entry, name) for name in VAULT_COLUMNS}
    return row | changes


def key_texts(key: bytes) -> list[str]:
    """Every way a key could be written out."""
    return [base64.b64encode(key).decode(), key.hex(), key.hex().upper(), repr(key)]


# --- keys -------------------------------------------------------------------------------


def test_a_key_decodes_from_base64_and_from_hex(key_pair: tuple[bytes, bytes]) -> None:
    _, public = key_pair
    assert decode_key(base64.b64encode(public).decode()) == public
    assert decode_key(public.hex()) == public
    assert decode_key(public.hex().upper()) == public
    assert decode_key(f"  {base64.b64encode(public).decode()}\n") == public


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_a_key_of_the_wrong_length_is_refused_without_echoing_it(length: int) -> None:
    key = os.urandom(length)
    for text in (base64.b64encode(key).decode(), key.hex()):
        with pytest.raises(ValueError, match="32-byte key") as raised:
            decode_key(text)
        message = str(raised.value)
        assert all(form not in message for form in key_texts(key) if len(form) >= 8)


def test_text_that_is_no_encoding_is_refused() -> None:
    with pytest.raises(ValueError, match="base64 or hex"):
        decode_key("not a key at all!")


def test_the_private_key_file_is_created_0600(tmp_path: Path) -> None:
    private, public = generate_key_pair()
    path = tmp_path / "vault.key"
    old_umask = os.umask(0)  # even a permissive umask gives no one else access
    try:
        write_private_key(path, private, vault_key_id(public))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_private_key(path) == private
    assert vault_key_id(public) in path.read_text()  # the comment names the key id


def test_an_existing_key_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "vault.key"
    first, _ = generate_key_pair()
    write_private_key(path, first, "vk-first")
    before = path.read_bytes()
    second, _ = generate_key_pair()
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        write_private_key(path, second, "vk-second")
    assert path.read_bytes() == before
    assert read_private_key(path) == first


def test_a_key_file_that_cannot_be_created_is_a_key_file_error(tmp_path: Path) -> None:
    private, _ = generate_key_pair()
    with pytest.raises(KeyFileError, match="cannot create the private key file"):
        write_private_key(tmp_path / "no-such-dir" / "vault.key", private, "vk-x")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o610])
def test_a_key_file_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "vault.key"
    private, _ = generate_key_pair()
    write_private_key(path, private, "vk-x")
    path.chmod(mode)
    with pytest.raises(KeyFileError, match="chmod 600") as raised:
        read_private_key(path)
    assert all(form not in str(raised.value) for form in key_texts(private))


def test_a_missing_or_malformed_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read"):
        read_private_key(tmp_path / "absent.key")
    path = tmp_path / "bad.key"
    path.write_text("# a comment\nnot-a-key\n")
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="does not hold one base64 private key"):
        read_private_key(path)
    private, _ = generate_key_pair()
    two = base64.b64encode(private).decode()
    path.write_text(f"{two}\n{two}\n")
    with pytest.raises(KeyFileError, match="does not hold one") as raised:
        read_private_key(path)
    assert two not in str(raised.value)


def test_key_ids_are_stable_distinct_and_reveal_no_key() -> None:
    private_a, public_a = generate_key_pair()
    _, public_b = generate_key_pair()
    assert public_key_of(private_a) == public_a
    assert vault_key_id(public_a) == vault_key_id(bytes(public_a))
    assert vault_key_id(public_a) != vault_key_id(public_b)
    assert vault_key_id(public_a).startswith("vk-")
    assert mask_key_id(HMAC_KEY) == mask_key_id(b"v" * 32)
    assert mask_key_id(HMAC_KEY) != mask_key_id(b"w" * 32)
    assert mask_key_id(HMAC_KEY).startswith("hk-")
    for key, key_id in ((public_a, vault_key_id(public_a)), (HMAC_KEY, mask_key_id(HMAC_KEY))):
        assert len(key_id) <= 32  # fits the key_id columns
        assert all(form not in key_id for form in key_texts(key))
    assert HMAC_KEY.decode() not in mask_key_id(HMAC_KEY)


# --- sealing and opening -----------------------------------------------------------------


def test_the_opener_opens_what_the_sealer_sealed(sealer: Sealer, opener: Opener) -> None:
    assert opener.key_id == sealer.key_id
    for plaintext in (IP.encode(), DEVICE.encode(), b"", os.urandom(1000)):
        sealed = sealer.seal(plaintext)
        expect_same(opener.open(sealed, sealer.key_id), plaintext, "the opened value")


def test_sealed_bytes_hide_the_plaintext(sealer: Sealer) -> None:
    for value in (IP, DEVICE):
        first, second = sealer.seal(value.encode()), sealer.seal(value.encode())
        assert first != value.encode()
        expect_absent([value], first, "a sealed value")
        assert len(first) == len(value) + 48  # ephemeral public key + MAC
        assert first != second  # each seal has its own ephemeral key: no equality leak


def test_another_key_pair_cannot_open_and_is_named(sealer: Sealer) -> None:
    other_private, other_public = generate_key_pair()
    sealed = sealer.seal(IP.encode())
    other = Opener(other_private)
    with pytest.raises(SealedError) as raised:
        other.open(sealed, sealer.key_id)
    message = str(raised.value)
    assert sealer.key_id in message
    assert other.key_id in message
    expect_absent([IP], message, "the error")
    # Even told that the key ids match, the wrong key cannot open it
    with pytest.raises(SealedError, match="does not open"):
        other.open(sealed, other.key_id)
    with pytest.raises(CryptoError):
        crypto_box_seal_open(sealed, other_public, other_private)


def test_a_corrupt_sealed_value_is_refused(sealer: Sealer, opener: Opener) -> None:
    sealed = bytearray(sealer.seal(DEVICE.encode()))
    sealed[-1] ^= 1
    with pytest.raises(SealedError, match="does not open") as raised:
        opener.open(bytes(sealed), sealer.key_id)
    expect_absent([DEVICE], str(raised.value), "the error")


def _attributes(value: Any, seen: set[int] | None = None) -> list[Any]:
    """`value` and everything reachable from its attributes and containers."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return []
    seen.add(id(value))
    found = [value]
    children: list[Any] = []
    if isinstance(value, dict):
        children = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple | set | frozenset):
        children = list(value)
    elif not isinstance(value, str | bytes | int | float | bool | type(None)):
        for cls in type(value).__mro__:
            for slot in getattr(cls, "__slots__", ()):
                if hasattr(value, slot):
                    children.append(getattr(value, slot))
        children.extend(getattr(value, "__dict__", {}).values())
    for child in children:
        found.extend(_attributes(child, seen))
    return found


def test_the_loader_side_holds_no_private_key_and_cannot_open(
    key_pair: tuple[bytes, bytes], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    private, public = key_pair
    # Given everything the loader is built from: the settings, the sealer and the masker
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INGESTOR_VAULT_PUBLIC_KEY", base64.b64encode(public).decode())
    settings = load_settings()
    assert settings.vault_key is not None
    sealer = Sealer(settings.vault_key)
    masker = VaultingMasker(HMAC_KEY, sealer, 10)
    masker.mask_ip(IP)
    # Then none of it holds the private key in any form
    reachable = _attributes(masker) + _attributes(settings.model_dump())
    forms = [private, *key_texts(private)]
    assert not any(
        isinstance(item, bytes | str) and any(form == item for form in forms) for item in reachable
    )
    assert not hasattr(sealer, "open")
    assert not hasattr(masker, "open")
    assert all(form not in repr(masker) for form in key_texts(private))
    # And the public key alone cannot open a sealed value
    (entry,) = masker.take()
    impostor, _ = generate_key_pair()
    with pytest.raises(CryptoError):
        crypto_box_seal_open(entry.sealed, public, impostor)
    # Only the private key's holder can
    expect_same(value_of(Opener(private), entry), IP, "the value")
    assert all(form not in repr(Opener(private)) for form in key_texts(private))


def test_an_entry_opens_only_as_the_value_of_its_own_token(sealer: Sealer, opener: Opener) -> None:
    masker = vaulting(sealer)
    masker.mask_ip(IP)
    masker.mask_device_id(DEVICE)
    ip_entry, device_entry = masker.take()
    checker = Checker(HMAC_KEY)
    assert opener.open_entry(as_row(ip_entry), checker) == IP
    # Moved to another row (another token, another field), it is refused
    for row in (
        as_row(ip_entry, token=device_entry.token),
        as_row(ip_entry, field="device_id"),
        as_row(device_entry, sealed=ip_entry.sealed),
    ):
        with pytest.raises(EntryRefused, match="does not match its token"):
            opener.open_entry(row, checker)


@pytest.mark.parametrize("form", ["bare", "framed"])
def test_a_value_sealed_by_someone_with_the_public_key_is_refused(
    sealer: Sealer, opener: Opener, form: str
) -> None:
    # Given a real entry, re-sealed by someone with write access to pii_vault, who knows
    # the token (it is in the row) and the public key (it is no secret)
    masker = vaulting(sealer)
    masker.mask_ip(IP)
    (entry,) = masker.take()
    forged = b"203.0.113.66"
    text = forged if form == "bare" else framed("ip", entry.token, forged)
    row = as_row(entry, sealed=sealer.seal(text))
    # Then it opens, but is refused: the forged value does not make the token
    with pytest.raises(EntryRefused, match="does not match its token") as raised:
        opener.open_entry(row, Checker(HMAC_KEY))
    expect_absent([forged.decode()], str(raised.value), "the refusal")


def test_an_entry_from_before_framing_still_opens_when_it_makes_its_token(
    sealer: Sealer, opener: Opener
) -> None:
    token = HmacMasker(HMAC_KEY).mask_device_id(DEVICE)
    row = {
        "token": token,
        "field": "device_id",
        "sealed": sealer.seal(DEVICE.encode()),  # how the previous release sealed it
        "key_id": sealer.key_id,
        "mask_key_id": mask_key_id(HMAC_KEY),
    }
    assert opener.open_entry(row, Checker(HMAC_KEY)) == DEVICE


def test_an_entry_made_with_another_masking_key_cannot_be_checked(
    sealer: Sealer, opener: Opener
) -> None:
    masker = vaulting(sealer)
    masker.mask_ip(IP)
    (entry,) = masker.take()
    with pytest.raises(EntryRefused, match="cannot be checked"):
        opener.open_entry(as_row(entry), Checker(b"another-masking-key-0123456789abcdef"))


# --- VaultingMasker ----------------------------------------------------------------------


def test_the_vaulting_masker_masks_as_the_hmac_masker_does(sealer: Sealer) -> None:
    plain, masker = HmacMasker(HMAC_KEY), vaulting(sealer)
    assert masker.mask_ip(IP) == plain.mask_ip(IP)
    assert masker.mask_device_id(DEVICE) == plain.mask_device_id(DEVICE)
    assert masker.digest_body(b"body") == plain.digest_body(b"body")
    assert plain.seal_body(b"body") is None


def test_each_unknown_token_is_sealed_once_per_message(sealer: Sealer, opener: Opener) -> None:
    masker = vaulting(sealer)
    # When one message masks an ip and a device id, the ip twice (a reject's nested copy)
    ip_token = masker.mask_ip(IP)
    device_token = masker.mask_device_id(DEVICE)
    assert masker.mask_ip(IP) == ip_token
    entries = masker.take()
    # Then each value is sealed once, under its token, with both key ids
    assert [(e.token, e.field) for e in entries] == [(ip_token, "ip"), (device_token, "device_id")]
    assert {e.key_id for e in entries} == {sealer.key_id}
    assert {e.mask_key_id for e in entries} == {mask_key_id(HMAC_KEY)}
    opened = [value_of(opener, e) for e in entries]
    expect_same(opened, [IP, DEVICE], "the opened entries")
    # And take() hands them over once
    assert masker.take() == ()


def test_an_uncommitted_value_is_sealed_once_and_carried_by_every_message(
    sealer: Sealer,
) -> None:
    masker = vaulting(sealer)
    token = masker.mask_ip(IP)
    first = masker.take()
    assert [e.token for e in first] == [token]
    # Not committed yet (the first message may be released, never to commit): the next
    # message carries the entry too, without sealing the value again
    masker.mask_ip(IP)
    second = masker.take()
    assert second == first
    assert second[0] is first[0]


def test_remembered_tokens_are_not_sealed_again(sealer: Sealer) -> None:
    masker = vaulting(sealer)
    token = masker.mask_ip(IP)
    device_token = masker.mask_device_id(DEVICE)
    first = masker.take()
    # When the batch holding them commits
    VaultMemory(masker).on_committed(
        [
            Processed(
                "m1",
                "h1",
                Rejection("m1", "x", "x", None, "x", 0, "d", dt.datetime.now(dt.UTC), 1),
                0,
                1,
                first,
            )
        ]
    )
    # Then masking the same values seals nothing
    assert masker.mask_ip(IP) == token
    assert masker.mask_device_id(DEVICE) == device_token
    assert masker.take() == ()


def test_the_cache_of_known_tokens_is_bounded(sealer: Sealer) -> None:
    masker = vaulting(sealer, cache_size=2)
    ips = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    tokens = [masker.mask_ip(ip) for ip in ips]
    masker.take()
    masker.remember(tokens)  # three tokens into a cache of two: the oldest goes
    for ip in ips:
        masker.mask_ip(ip)
    assert [e.token for e in masker.take()] == [tokens[0]]
    assert len(masker._known) == 2
    no_cache = vaulting(sealer, cache_size=0)
    no_cache.remember([no_cache.mask_ip(IP)])
    no_cache.take()
    no_cache.mask_ip(IP)
    assert len(no_cache.take()) == 1


# --- the transform with the vault --------------------------------------------------------


def process(transformer: Transformer, body: str | bytes, message_id: str = "m1") -> Processed:
    return transformer.process(Envelope(message_id, "h1", body, SENT_MS, 2))


def test_a_row_carries_the_vault_entries_of_its_values(sealer: Sealer, opener: Opener) -> None:
    transformer = Transformer(vaulting(sealer))
    mapped = {**EVENT, "ip": f"::ffff:{IP}"}  # the same address written another way
    processed = process(transformer, orjson.dumps(mapped))
    row = processed.outcome
    assert isinstance(row, LoginRow)
    by_field = {e.field: e for e in processed.vault}
    assert by_field["ip"].token == row.masked_ip
    assert by_field["device_id"].token == row.masked_device_id
    expect_same(
        value_of(opener, by_field["ip"]),
        canonical_ip(IP),
        "the vaulted ip (canonical form)",
    )
    expect_same(value_of(opener, by_field["device_id"]), DEVICE, "id")
    # And the next message (nothing committed yet) carries only its own entries
    second = process(transformer, orjson.dumps({"user_id": "u2"}), "m2")
    assert second.vault == ()


def test_a_reject_keeps_its_tokens_and_its_sealed_body(sealer: Sealer, opener: Opener) -> None:
    transformer = Transformer(vaulting(sealer))
    body = orjson.dumps({**EVENT, "app_version": "1.2.3.4", "extra": {"device-id": DEVICE}})
    processed = process(transformer, body)
    reject = processed.outcome
    assert isinstance(reject, Rejection)
    assert reject.reason_code == "invalid_app_version"
    plain = HmacMasker(HMAC_KEY)
    assert reject.pii_tokens == (plain.mask_ip(IP), plain.mask_device_id(DEVICE))
    assert {e.token for e in processed.vault} == set(reject.pii_tokens)
    assert len(processed.vault) == 2  # the device id twice in the body is sealed once
    assert reject.key_id == sealer.key_id
    assert reject.sealed_body is not None
    expect_same(opener.open(reject.sealed_body, sealer.key_id), body, "the sealed body")
    assert reject.body is not None
    expect_absent([IP, DEVICE], reject.body, "the redacted body")
    expect_absent([IP, DEVICE], reject.sealed_body, "the sealed body")


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe not utf-8 ip=" + IP.encode(), f"ip={IP}", "[1, 2]", '"a string"', "[" * 2000],
)
def test_a_body_that_is_no_object_is_kept_only_sealed(
    sealer: Sealer, opener: Opener, body: str | bytes
) -> None:
    processed = process(Transformer(vaulting(sealer)), body)
    reject = processed.outcome
    assert isinstance(reject, Rejection)
    assert (reject.body, reject.pii_tokens, processed.vault) == (None, (), ())
    assert reject.sealed_body is not None
    raw = body if isinstance(body, bytes) else body.encode()
    expect_same(opener.open(reject.sealed_body, sealer.key_id), raw, "the sealed body")


def test_without_the_vault_nothing_is_sealed() -> None:
    transformer = Transformer(HmacMasker(HMAC_KEY))
    row = process(transformer, orjson.dumps(EVENT))
    reject = process(transformer, orjson.dumps({**EVENT, "user_id": None}))
    junk = process(transformer, b"not json")
    assert row.vault == reject.vault == junk.vault == ()
    for item in (reject, junk):
        assert isinstance(item.outcome, Rejection)
        assert (item.outcome.sealed_body, item.outcome.key_id) == (None, None)
    assert isinstance(reject.outcome, Rejection)
    assert len(reject.outcome.pii_tokens) == 2  # tokens are listed either way


def test_the_vault_changes_no_token(sealer: Sealer) -> None:
    body = orjson.dumps(EVENT)
    assert (
        process(Transformer(HmacMasker(HMAC_KEY)), body).outcome
        == process(Transformer(vaulting(sealer)), body).outcome
    )


# --- settings ----------------------------------------------------------------------------


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("INGESTOR_HMAC_KEY", "INGESTOR_VAULT_PUBLIC_KEY", "INGESTOR_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env file here


@pytest.mark.usefixtures("clean_environment")
@pytest.mark.parametrize(
    "value",
    [
        "not-a-key",
        base64.b64encode(b"k" * 31).decode(),
        base64.b64encode(b"k" * 64).decode(),
        (b"k" * 16).hex(),
    ],
)
def test_a_bad_vault_public_key_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("INGESTOR_VAULT_PUBLIC_KEY", value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert raised.value.variable == "INGESTOR_VAULT_PUBLIC_KEY"
    assert "32-byte key" in str(raised.value)
    assert value not in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.usefixtures("clean_environment")
def test_the_vault_is_off_unless_a_public_key_is_set(
    monkeypatch: pytest.MonkeyPatch, key_pair: tuple[bytes, bytes]
) -> None:
    assert load_settings().vault_key is None
    monkeypatch.setenv("INGESTOR_VAULT_PUBLIC_KEY", key_pair[1].hex())
    assert load_settings().vault_key == key_pair[1]


def test_reveal_output_escapes_control_characters() -> None:
    # A device id from a hostile body may hold tabs, newlines or terminal escape codes
    assert printable("abc\t\n\x1b[2J") == "abc\\t\\n\\x1b[2J"
    assert printable("ünïcode-ok 123") == "ünïcode-ok 123"


def test_a_reject_the_database_refused_keeps_its_tokens_for_erasure() -> None:
    # Given a reject with PII tokens and its sealed original
    original = Rejection(
        message_id="m-1",
        reason_code="missing_user_id",
        reason="user_id is missing",
        body='{"ip": "t1"}',
        body_kind="object",
        body_bytes=20,
        body_digest="d",
        sent_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        receive_count=1,
        pii_tokens=("t1",),
        sealed_body=b"sealed",
        key_id="vk-1",
        user_digest="u1",
    )
    # When the database refuses it and only a minimal reject is kept
    minimal = refused_reject(original, RowRejected("22001", "StringDataRightTruncationError"))
    # Then the tokens stay listed, so `forget` can reach the sealed body, and so does its
    # user's digest, so `forget --user-id` finds it
    assert minimal.body is None
    assert minimal.pii_tokens == ("t1",)
    assert minimal.sealed_body == b"sealed"
    assert minimal.user_digest == "u1"
