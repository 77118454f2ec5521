"""Text from the database or a message body on its way to a terminal or a log line."""

from __future__ import annotations


def printable(value: str, limit: int | None = None) -> str:
    """The value with control characters escaped: text from a hostile body or a tampered
    row must not break tab-separated output or send escape codes (a window title, a
    cleared screen) to the operator's terminal. With `limit`, cut to that many characters
    first (an answer quoted in an error line)."""
    if limit is not None and len(value) > limit:
        value = value[:limit] + "…"
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in value)
