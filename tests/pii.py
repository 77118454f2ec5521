"""Assertions over plaintext PII that never print it: pytest's assertion rewriting shows
both sides of a failed `assert a == b`, and a failed test must not leak an ip or device id
into a CI log. These report what differs by count and position only."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def expect_same(actual: object, expected: object, what: str) -> None:
    """`actual == expected`, reporting only that `what` differs."""
    if actual == expected:
        return
    if isinstance(actual, set | frozenset) and isinstance(expected, set | frozenset):
        raise AssertionError(
            f"{what}: {len(actual - expected)} unexpected, {len(expected - actual)} missing"
            f" (of {len(expected)})"
        )
    if isinstance(actual, Sequence) and isinstance(expected, Sequence):
        wrong = [i for i, (a, b) in enumerate(zip(actual, expected, strict=False)) if a != b]
        raise AssertionError(
            f"{what}: lengths {len(actual)} and {len(expected)}, different at {wrong[:10]}"
        )
    raise AssertionError(f"{what} differs from what was expected")


def expect_absent(values: Iterable[str | bytes], haystack: str | bytes, what: str) -> None:
    """None of `values` occurs in `haystack`; reports how many did, never which."""
    data = haystack if isinstance(haystack, bytes) else haystack.encode("utf-8", "surrogatepass")
    found = sum(1 for value in values if _bytes(value) in data)
    if found:
        raise AssertionError(f"{what} holds {found} plaintext values")


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
