"""What the custody commands and the service refuse or turn off to protect their keys:
unsafe private key files, weak masking keys, core dumps."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingestor.custody.keys import (
    KeyFileError,
    generate_key_pair,
    read_private_key,
    write_private_key,
)
from ingestor.errors import ConfigError
from ingestor.keytext import README_EXAMPLE_KEY, weak_key_problem
from ingestor.settings import load_settings
from ingestor.table import IP_DOMAIN
from ingestor.transform.masking import HmacMasker

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "vault.key"
    private, _ = generate_key_pair()
    write_private_key(path, private, "vk-test")
    return path


# --- the private key file ------------------------------------------------------------------


def test_a_symbolic_link_to_a_good_key_file_is_refused(key_file: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.key"
    link.symlink_to(key_file)
    with pytest.raises(KeyFileError, match="is a symbolic link"):
        read_private_key(link)
    assert read_private_key(key_file)  # the file itself is fine


def test_a_key_file_owned_by_another_user_is_refused(
    key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file stays its creator's; the command runs as another user (uid 65534), as a
    # file given to someone else would look to it (no root needed to play that)
    owner = key_file.stat().st_uid
    monkeypatch.setattr("ingestor.custody.keys.os.geteuid", lambda: 65534)
    expected = f"owned by uid {owner}, not by the user running this"
    with pytest.raises(KeyFileError, match=expected):
        read_private_key(key_file)


def test_something_else_than_a_regular_file_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.key"
    os.mkfifo(fifo, 0o600)  # opening a FIFO for reading would block without a writer
    with pytest.raises(KeyFileError, match="not a regular file"):
        read_private_key(fifo)
    with pytest.raises(KeyFileError, match="not a regular file"):
        read_private_key(tmp_path)


def test_a_key_file_too_long_to_be_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.key"
    private, _ = generate_key_pair()
    path.write_text(base64.b64encode(private).decode() + "\n" + "#" * 10_000 + "\n")
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="does not hold one base64 private key"):
        read_private_key(path)


# --- weak masking keys ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "a" * 32,
        "a" * 200,
        "password" * 4,
        "ab" * 40,
        "0123456789abcdef" * 2,
        "abcabcabcabcabcabcabcabcabcabcabca",
    ],
)
def test_a_repeated_pattern_is_refused(key: str) -> None:
    problem = weak_key_problem(key.encode())
    assert problem is not None
    assert "repeated" in problem
    assert key not in problem


def test_few_distinct_characters_and_the_readme_example_are_refused() -> None:
    assert "distinct" in str(weak_key_problem(b"a" * 31 + b"bcdef"))
    assert "README" in str(weak_key_problem(README_EXAMPLE_KEY.encode()))
    assert README_EXAMPLE_KEY in README.read_text(), "the README shows the refused example"


def test_keys_as_openssl_rand_prints_them_are_accepted_by_the_thousand() -> None:
    for _ in range(5_000):
        raw = secrets.token_bytes(32)
        for text in (raw.hex(), base64.b64encode(raw).decode()):
            assert weak_key_problem(text.encode()) is None


@given(st.binary(min_size=32, max_size=32))
def test_any_32_random_bytes_written_as_hex_or_base64_are_accepted(raw: bytes) -> None:
    if len(set(raw.hex())) < 8:  # a hex string of 64 with fewer than 8 digits is not random
        return
    assert weak_key_problem(raw.hex().encode()) is None
    assert weak_key_problem(base64.b64encode(raw)) is None


def test_an_accepted_key_makes_tokens_exactly_as_before(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a key as openssl prints it, set in the environment
    key = secrets.token_hex(32)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INGESTOR_HMAC_KEY", key)
    settings = load_settings()
    # Then the key is used byte for byte: its tokens are HMAC-SHA256 over the same bytes
    assert settings.key_bytes == key.encode()
    expected = hmac.new(key.encode(), IP_DOMAIN + b"\x00" + b"192.0.2.1", hashlib.sha256)
    assert HmacMasker(settings.key_bytes).mask_ip("192.0.2.1") == expected.hexdigest()


@pytest.mark.parametrize("key", ["a" * 32, "password" * 4, README_EXAMPLE_KEY])
def test_the_service_settings_refuse_a_weak_key_naming_the_variable(
    key: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INGESTOR_HMAC_KEY", key)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert raised.value.variable == "INGESTOR_HMAC_KEY"
    assert key not in str(raised.value)


# --- core dumps ----------------------------------------------------------------------------

CHECK_CORE_DUMPS = """
import ctypes, resource, sys
linux = sys.platform.startswith("linux")
resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
libc = ctypes.CDLL(None)
dumpable = (lambda: libc.prctl(3, 0, 0, 0, 0)) if linux else (lambda: 0)  # PR_GET_DUMPABLE
assert not linux or dumpable() == 1  # dumpable to start with
from ingestor.cli.hardening import disable_core_dumps
disable_core_dumps()
print(resource.getrlimit(resource.RLIMIT_CORE), dumpable())
"""


def test_core_dumps_are_turned_off() -> None:
    # (PR_SET_DUMPABLE is Linux's: elsewhere only the limit is checked)
    result = subprocess.run(
        [sys.executable, "-c", CHECK_CORE_DUMPS], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["(0,", "0)", "0"]
