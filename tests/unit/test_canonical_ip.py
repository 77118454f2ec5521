"""canonical_ip spells every address as `ipaddress` does, and refuses what it refuses.

The tokens of stored rows depend on the spelling: the C parser and the compression of
the fast path must never give a different text than the reference below, nor take an
address the reference refuses (a reject would become a row).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestor.table import canonical_ip

HEX = "0123456789abcdefABCDEF"


def by_ipaddress(text: str) -> str:
    """The reference: compressed, an IPv4-mapped IPv6 address as its IPv4 address."""
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return address.compressed


def outcome(spell: Callable[[str], str], text: str) -> str:
    try:
        return str(spell(text))
    except ValueError:
        return "refused"


def spellings(number: int) -> list[str]:
    address = ipaddress.IPv6Address(number)
    groups = address.exploded.split(":")
    return [
        address.exploded,
        address.exploded.upper(),
        address.compressed,
        ":".join(group.lstrip("0") or "0" for group in groups),  # no leading zeros
        f"::ffff:{ipaddress.IPv4Address(number & 0xFFFFFFFF)}",  # a dotted tail
    ]


@pytest.mark.parametrize("zeros", range(256))
def test_every_placement_of_zero_groups_is_spelt_as_ipaddress_spells_it(zeros: int) -> None:
    for other in (1, 0xABC, 0xFFFF):
        groups = [0 if zeros >> index & 1 else other for index in range(8)]
        number = int("".join(f"{group:04x}" for group in groups), 16)
        for text in spellings(number):
            assert canonical_ip(text) == by_ipaddress(text), text


ADDRESSES = st.one_of(
    st.integers(0, 2**128 - 1),
    st.integers(0, 2**32 - 1).map(lambda low: 0xFFFF << 32 | low),  # IPv4-mapped
    st.integers(0, 2**32 - 1),  # IPv4-compatible, and the unspecified address
    st.integers(0, 0xFFFF).map(lambda high: high << 112),  # one group, then zeros
)


@given(ADDRESSES)
@settings(max_examples=2_000)
def test_any_address_in_any_spelling_is_spelt_as_ipaddress_spells_it(number: int) -> None:
    for text in spellings(number):
        assert canonical_ip(text) == by_ipaddress(text), text


PIECES = ["", "0", "00", "0000", "00000", "1", "01", "ffff", "FFFF", "12345", "g", "1.2.3.4",
          "01.2.3.4", "1.2.3", "256.1.1.1", "::", ".", " ", "%eth0", "0x1", "\u0661"]  # fmt: skip


@given(
    st.one_of(
        st.text(HEX + ":.% g", max_size=45),
        st.lists(st.sampled_from(PIECES), min_size=1, max_size=10).map(":".join),
    )
)
@settings(max_examples=3_000)
def test_text_is_taken_or_refused_as_ipaddress_takes_or_refuses_it(text: str) -> None:
    assert outcome(canonical_ip, text) == outcome(by_ipaddress, text), text


@pytest.mark.parametrize(
    "text", ["fe80::1%eth0", "FE80::0:1%25", "::ffff:10.0.0.1", "::10.0.0.1", "1:2:3:4:5:6:7::"]
)
def test_the_forms_the_c_parser_leaves_to_ipaddress_are_spelt_as_before(text: str) -> None:
    assert canonical_ip(text) == by_ipaddress(text)


@pytest.mark.parametrize("text", ["::ffff:01.2.3.4", "1::2::3", ":1::", "1:2:3:4:5:6:7:8:9", "g::"])
def test_what_neither_parser_takes_is_refused(text: str) -> None:
    assert outcome(canonical_ip, text) == "refused"
