"""PRODUCT.md rule 3: keyed, deterministic, domain-separated tokens."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingestor.table import canonical_ip
from ingestor.transform.masking import HmacMasker

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


def test_tokens_are_lowercase_hex_sha256() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", HmacMasker(KEY).mask_ip("1.2.3.4"))


@given(st.text(min_size=1, max_size=64))
def test_equal_values_give_equal_tokens(value: str) -> None:
    assert HmacMasker(KEY).mask_device_id(value) == HmacMasker(KEY).mask_device_id(value)


def test_tokens_depend_on_the_key() -> None:
    assert HmacMasker(KEY).mask_ip("1.2.3.4") != HmacMasker(OTHER_KEY).mask_ip("1.2.3.4")


def test_fields_are_domain_separated() -> None:
    masker = HmacMasker(KEY)
    assert masker.mask_ip("1.2.3.4") != masker.mask_device_id("1.2.3.4")


@pytest.mark.parametrize("value", ["1.2.3.4", "593-47-5928"])
def test_tokens_are_not_unkeyed_hashes(value: str) -> None:
    masker = HmacMasker(KEY)
    plain = {hashlib.sha256(value.encode()).hexdigest(), hashlib.md5(value.encode()).hexdigest()}
    assert masker.mask_ip(value) not in plain
    assert masker.mask_device_id(value) not in plain


def test_the_same_address_written_two_ways_is_one_token() -> None:
    masker = HmacMasker(KEY)
    assert masker.mask_ip(canonical_ip("::ffff:10.0.0.1")) == masker.mask_ip(
        canonical_ip("10.0.0.1")
    )
    assert masker.mask_ip(canonical_ip("2001:DB8:0::1")) == masker.mask_ip(
        canonical_ip("2001:db8::1")
    )


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        HmacMasker(b"short")


def test_the_key_is_not_in_the_repr() -> None:
    assert "k" * 8 not in repr(HmacMasker(KEY))
