"""Rendering for Telegram: HTML parse mode, escaped user text, mentions, inline keyboards."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.engine.text import Mention, Text
from commands.registry import REGISTRY, Command
from config.i18n import Catalog

CALLBACK_LIMIT = 64  # bytes of callback_data Telegram keeps
MESSAGE_LIMIT = 4096  # characters of text in one message


WORD_JOINER = "\u2060"  # invisible; after an "@" it keeps Telegram from linking a username


def escape(text: str) -> str:
    """Text from users, safe inside an HTML-mode message: no tags, no entities of its own, and
    no ``@username`` that Telegram would turn into a link to whoever holds that name."""
    return html.escape(text, quote=False).replace("@", "@" + WORD_JOINER)


def mention(m: Mention) -> str:
    """A link to one user: pings that user only; the name is user text, escaped."""
    if m.user_id.isdigit():
        return f'<a href="tg://user?id={m.user_id}">{escape(m.name)}</a>'
    return escape(m.name)


def to_html(catalog: Catalog, text: Text, locale: str = "en") -> str:
    """A sentence as Telegram HTML: the catalog's words and every value escaped, mentions as
    links to one user, commands in their Telegram spelling."""
    return telegram_commands(catalog.render(text, locale, escape, mention, markup=escape))


def _safe_cut(html: str, limit: int) -> int:
    """The last position <= limit that is not inside a tag or an entity (``&lt;``)."""
    cut = limit
    lt, amp = html.rfind("<", 0, cut), html.rfind("&", 0, cut)
    if lt > html.rfind(">", 0, cut):
        cut = lt
    if amp > html.rfind(";", 0, cut):
        cut = min(cut, amp)
    return cut if cut > 0 else limit


def split_message(html: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Parts of at most ``limit`` characters, cut at line ends where possible (a longer line
    is cut between words, never inside a tag or an entity). Only mentions are tags, and a
    mention never spans lines, so every part is valid HTML on its own."""
    parts: list[str] = []
    current = ""
    for line in html.split("\n"):
        while len(line) > limit:
            cut = line.rfind(" ", 0, limit)
            cut = _safe_cut(line, cut if cut > limit // 2 else limit)
            head, line = line[:cut], line[cut:].lstrip(" ")
            if current:
                parts.append(current)
                current = ""
            parts.append(head)
        if not current:
            current = line
        elif len(current) + 1 + len(line) <= limit:
            current += "\n" + line
        else:
            parts.append(current)
            current = line
    if current or not parts:
        parts.append(current)
    return parts


def tg_command(name: str) -> str:
    """Telegram command names allow only a-z, 0-9 and _: `tier-add` is typed `/tier_add`."""
    return name.replace("-", "_")


def telegram_usage(command: Command) -> str:
    """How a command is typed in Telegram, where names can't contain '-': /tier_add ..."""
    return "/" + tg_command(command.name) + command.usage()[len(command.name) :]


def neutral_command(name: str) -> str:
    return name.replace("_", "-").lower()


def _hyphenated() -> re.Pattern[str]:
    names = sorted((c.name for c in REGISTRY.all() if "-" in c.name), key=len, reverse=True)
    if not names:
        return re.compile(r"(?!x)x")
    return re.compile(r"/(" + "|".join(re.escape(n) for n in names) + r")(?![\w-])")


def telegram_commands(rendered: str) -> str:
    """Sentences mention commands as `/tier-add`; on Telegram they are typed `/tier_add`."""
    return _hyphenated().sub(lambda m: "/" + tg_command(m.group(1)), rendered)


class CallbackMap:
    """callback_data is at most 64 bytes: a longer command line is kept here under a short id.

    Kept in memory: a button whose line was too long stops working after a restart (pressing it
    then says so); every line the engine builds today fits in 64 bytes.
    """

    def __init__(self) -> None:
        self._lines: dict[str, str] = {}

    def data_for(self, command: str) -> str:
        if len(command.encode()) <= CALLBACK_LIMIT and not command.startswith("#"):
            return command
        key = f"#{len(self._lines) + 1}"
        self._lines[key] = command
        return key

    def command_for(self, data: str) -> str | None:
        if data.startswith("#"):
            return self._lines.get(data)
        return data


def keyboard(
    buttons: Iterable[tuple[str, str]], callbacks: CallbackMap
) -> InlineKeyboardMarkup | None:
    """(label, command line) pairs as one button per row; labels are plain text."""
    rows = [
        [InlineKeyboardButton(label, callback_data=callbacks.data_for(command))]
        for label, command in buttons
    ]
    return InlineKeyboardMarkup(rows) if rows else None
