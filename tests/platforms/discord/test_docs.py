"""docs/discord.md says what the code does: the permissions integer cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

import discord

from bot.platforms.discord.client import invite_permissions

DOC = Path(__file__).parents[3] / "docs" / "discord.md"


def test_the_documented_permissions_are_the_ones_the_bot_needs() -> None:
    text = DOC.read_text(encoding="utf-8")
    needed = invite_permissions()
    assert needed.view_channel and needed.send_messages and not needed.send_tts_messages
    integer = int(re.search(r"Permissions integer: \*\*(\d+)\*\*", text).group(1))
    assert integer == needed.value
    urls = {int(n) for n in re.findall(r"permissions=(\d+)", text)}
    assert urls == {needed.value}
    optional = int(re.search(r"integer with it: \*\*(\d+)\*\*", text).group(1))
    assert optional == invite_permissions(invite_events=True).value
    for name, bit in re.findall(r"\| ([A-Z][A-Za-z ]+) \| [^|]+ \| `1 << (\d+)`", text):
        assert discord.Permissions(1 << int(bit)) == discord.Permissions(**{_flag(name): True}), (
            name
        )


def _flag(name: str) -> str:
    return {
        "View Channels": "view_channel",
        "Send Messages": "send_messages",
        "Embed Links": "embed_links",
        "Create Invite": "create_instant_invite",
        "Manage Server": "manage_guild",
        "Manage Roles": "manage_roles",
    }[name]


def test_the_docs_say_how_moderators_without_manage_messages_get_the_commands() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "Integrations → the bot → `/referral-mod`" in text
    assert "up to an hour" not in text
    assert "events only to a bot with Manage Channels" in text
