"""Small steps the Telegram tests share: a group with members, links out of messages."""

from __future__ import annotations

import re
from typing import Any

from tests.platforms.telegram.conftest import World, texts

INVITE = re.compile(r"https://t\.me/\+[\w-]+")
DEEP = re.compile(r"https://t\.me/referral_test_bot\?start=[\w-]+")


async def group_with_member(
    world: World, title: str = "Fans", username: str | None = None
) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """A group (bot is admin), its owner, and Alice: a member who has started the bot."""
    fake = world.fake
    owner = fake.user("Olga", started=True)
    group = fake.add_group(title, owner, username=username)
    alice = fake.user("Alice", started=True)
    fake.join(group, alice)
    await world.settle()
    return group, owner, alice


async def invite_link(world: World, group: int, member: dict[str, Any]) -> str:
    """The member types /invite in the group and reads the link in the private answer."""
    world.fake.say(group, member, "/invite")
    sent = await world.settle()
    [dm] = texts(sent, member["id"])
    found = INVITE.search(dm) or DEEP.search(dm)
    assert found, dm
    return found.group(0)
