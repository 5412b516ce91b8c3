"""Neutral Text -> Discord message text, with mentions that can only ping who the text names.

User-provided values are escaped (markdown and mentions); only explicit ``Mention`` values become
``<@id>``, and the ``AllowedMentions`` sent with each message lists exactly those users: never
@everyone, @here or a role, whatever a display name or an admin's text contains.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import discord

from bot.engine.text import Mention, Text
from config.i18n import Catalog

LIMIT = 2000  # Discord's message length limit


def escape(text: str) -> str:
    return discord.utils.escape_mentions(discord.utils.escape_markdown(text))


@dataclass(slots=True)
class Rendered:
    text: str
    users: list[int] = field(default_factory=list)

    @property
    def allowed_mentions(self) -> discord.AllowedMentions:
        return allowed_mentions(self.users)

    def chunks(self) -> list[str]:
        return split(self.text)


def allowed_mentions(users: list[int]) -> discord.AllowedMentions:
    return discord.AllowedMentions(
        everyone=False,
        roles=False,
        users=[discord.Object(id=u) for u in users],
        replied_user=False,
    )


def render(catalog: Catalog, text: Text, locale: str = "en") -> Rendered:
    users: list[int] = []

    def mention(m: Mention) -> str:
        if m.user_id.isdigit():
            if int(m.user_id) not in users:
                users.append(int(m.user_id))
            return f"<@{m.user_id}>"
        return "@" + escape(m.name)

    return Rendered(catalog.render(text, locale, escape, mention), users)


def split(text: str, limit: int = LIMIT) -> list[str]:
    """Split at line breaks into messages Discord accepts (a very long line is cut)."""
    if len(text) <= limit:
        return [text or "\u200b"]
    out: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:
            if current:
                out.append(current)
                current = ""
            out.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            out.append(current)
            current = line
        else:
            current = candidate
    if current:
        out.append(current)
    return out
