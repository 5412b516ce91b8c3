"""Locale catalogs: every user-facing sentence lives in config/locales/<lang>.toml.

A catalog entry is either a template (``"You have {count} points."``) or a table of CLDR plural
forms chosen by the ``count`` value (``{ one = "...", other = "..." }``). Rendering takes the
platform's ``escape`` and ``mention`` functions: every value that came from a user is escaped for
the place the text lands in, and mentions are only ever the explicit Mention values.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date, format_interval, format_skeleton

from bot.engine.text import Date, DateRange, Mention, Moment, Text

LOCALES = Path(__file__).with_name("locales")
FALLBACK = "en"

Escape = Callable[[str], str]
MentionFn = Callable[[Mention], str]


def _flatten(prefix: str, data: dict[str, Any], out: dict[str, Any]) -> None:
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and not _is_plural(value):
            _flatten(full, value, out)
        else:
            out[full] = value


def _is_plural(value: dict[str, Any]) -> bool:
    return "other" in value and all(isinstance(v, str) for v in value.values())


@lru_cache(maxsize=32)
def _plural_form(locale: str, n: int) -> str:
    return Locale.parse(locale).plural_form(abs(n))


class Catalog:
    def __init__(self, directory: Path = LOCALES) -> None:
        # <lang>.toml holds the core's sentences; <lang>/<feature>.toml (one file per platform
        # adapter or feature) adds its own keys. A key defined twice is an error.
        self.messages: dict[str, dict[str, Any]] = {}
        files = [(f.stem, f) for f in sorted(directory.glob("*.toml"))]
        files += [(f.parent.name, f) for f in sorted(directory.glob("*/*.toml"))]
        for language, file in files:
            flat: dict[str, Any] = {}
            _flatten("", tomllib.loads(file.read_text(encoding="utf-8")), flat)
            known = self.messages.setdefault(language, {})
            twice = sorted(set(known) & set(flat))
            if twice:
                raise ValueError(f"{file}: {twice[0]!r} is already defined for {language!r}")
            known.update(flat)

    @property
    def languages(self) -> list[str]:
        return sorted(self.messages)

    def template(self, key: str, locale: str, count: Any = None) -> str:
        entry = self.messages.get(locale, {}).get(key)
        if entry is None:
            entry = self.messages[FALLBACK].get(key)
            locale = FALLBACK
        if entry is None:
            raise KeyError(f"no catalog entry for {key!r}")
        if isinstance(entry, dict):
            form = _plural_form(locale, int(count or 0)) if isinstance(count, int) else "other"
            return entry.get(form, entry["other"])
        return entry

    def render(
        self,
        text: Text,
        locale: str = FALLBACK,
        escape: Escape = str,
        mention: MentionFn | None = None,
        markup: Escape | None = None,
    ) -> str:
        """``markup`` escapes the catalog's own words for a markup language (Telegram HTML):
        sentences are plain text, so a literal ``<setting>`` must not become a tag."""
        locale = locale if locale in self.messages else FALLBACK
        mention_fn = mention or (lambda m: "@" + escape(m.name))
        if text.key == "$custom":
            # An admin's own template (e.g. a welcome text): its words are user text, escaped too.
            template = str(text.values["template"])
            values = {k: v for k, v in text.values.items() if k != "template"}
            return self._format(
                template, values, locale, escape, mention_fn, literal=escape, markup=markup
            )
        template = self.template(text.key, locale, text.values.get("count"))
        return self._format(
            template, dict(text.values), locale, escape, mention_fn, literal=markup,
            markup=markup, strict=True,
        )  # fmt: skip

    def _format(
        self,
        template: str,
        values: dict[str, Any],
        locale: str,
        escape: Escape,
        mention: MentionFn,
        literal: Escape | None,
        markup: Escape | None = None,
        strict: bool = False,
    ) -> str:
        out: list[str] = []
        for text, name, _spec, _conv in string.Formatter().parse(template):
            out.append(literal(text) if literal else text)
            if name is None:
                continue
            if name not in values:
                if not strict:
                    continue
                raise KeyError(f"{name!r} missing for template {template[:40]!r}")
            out.append(self._value(values[name], locale, escape, mention, markup))
        return "".join(out)

    def _value(
        self,
        value: Any,
        locale: str,
        escape: Escape,
        mention: MentionFn,
        markup: Escape | None = None,
    ) -> str:
        if isinstance(value, Text):
            return self.render(value, locale, escape, mention, markup)
        if isinstance(value, Mention):
            return mention(value)
        if isinstance(value, Date):
            when = datetime.fromtimestamp(value.ts, UTC).date()
            return format_date(when, format="medium", locale=locale)
        if isinstance(value, DateRange):
            start = datetime.fromtimestamp(value.start, UTC).date()
            end = datetime.fromtimestamp(value.end, UTC).date()
            return format_interval(start, end, "MMMd", locale=locale)
        if isinstance(value, Moment):
            moment = datetime.fromtimestamp(value.ts, UTC)
            day = format_date(moment.date(), format="medium", locale=locale)
            return f"{day}, {format_skeleton('Hm', moment, tzinfo=UTC, locale=locale)} UTC"
        if isinstance(value, list | tuple):
            return "\n".join(self._value(v, locale, escape, mention, markup) for v in value)
        if isinstance(value, bool) or value is None:
            return escape(str(value or ""))
        if isinstance(value, int):
            return str(value)
        return escape(str(value))
