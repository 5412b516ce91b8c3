"""Neutral message text: a catalog key plus values, rendered by each platform.

The engine never builds sentences. It says *what* to tell (a key and values); the platform
renders it from the locale catalog with its own escaping, so user-provided text is always
escaped for the place it lands in and mentions are always explicit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Mention:
    """A person the message is about. Platforms render it as a ping limited to this user."""

    user_id: str
    name: str


@dataclass(frozen=True, slots=True)
class Date:
    """A point in time (epoch seconds), rendered as a date in the reader's locale."""

    ts: int


@dataclass(frozen=True, slots=True)
class DateRange:
    """Days from ``start`` to ``end`` (both included, epoch seconds), rendered in the reader's
    locale as a short interval such as "Feb 2 to 8"."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Moment:
    """A point in time (epoch seconds), rendered as date and time of day (UTC)."""

    ts: int


@dataclass(frozen=True, slots=True)
class Text:
    key: str
    values: Mapping[str, Any] = field(default_factory=dict)


def t(key: str, **values: Any) -> Text:
    return Text(key, values)


def to_json(value: Any) -> Any:
    """Encode a Text (or any value inside one) as plain JSON data for the outbox."""
    if isinstance(value, Text):
        return {"$t": value.key, "v": {k: to_json(v) for k, v in value.values.items()}}
    if isinstance(value, Mention):
        return {"$m": value.user_id, "n": value.name}
    if isinstance(value, Date):
        return {"$d": value.ts}
    if isinstance(value, DateRange):
        return {"$dr": [value.start, value.end]}
    if isinstance(value, Moment):
        return {"$dt": value.ts}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def from_json(data: Any) -> Any:
    if isinstance(data, dict):
        if "$t" in data:
            return Text(data["$t"], {k: from_json(v) for k, v in data["v"].items()})
        if "$m" in data:
            return Mention(data["$m"], data["n"])
        if "$d" in data:
            return Date(data["$d"])
        if "$dr" in data:
            return DateRange(*data["$dr"])
        if "$dt" in data:
            return Moment(data["$dt"])
    if isinstance(data, list):
        return [from_json(v) for v in data]
    return data
