"""An optional later check of ambiguous joins, from Discord's own join data.

Discord's ``POST /guilds/{id}/members-search`` reports, for each member, the invite they joined
with (``source_invite_code``) and who made it (``inviter_id``). It works for bots but is
undocumented (discord-api-docs #6936, #7068): it may change or vanish without notice, and a new
member appears there only after about 20 seconds. So it never decides a join on its own: when
``discord.members_search`` is on, the members of an *ambiguous* window are looked up
``SEARCH_AFTER`` seconds later, and a join whose reported invite is one of its own candidates is
credited to that candidate through the same audited path a moderator's ``settle-join`` uses.
Anything else (no answer, an error, an invite that is not a candidate) leaves the join
ambiguous, as before.
"""

from __future__ import annotations

import logging
from typing import Any

import discord

log = logging.getLogger(__name__)

SEARCH_AFTER = 30.0  # seconds: Discord lists a new member in members-search after ~20 s
ACTOR_ID, ACTOR_NAME = "discord", "members-search"  # how the audit log names these settlements


async def join_invites(
    client: discord.Client, guild_id: int, user_ids: list[int]
) -> dict[int, str]:
    """user id -> the invite code Discord says they joined with (only those it reports)."""
    route = discord.http.Route("POST", "/guilds/{guild_id}/members-search", guild_id=guild_id)
    body = {
        "limit": min(1000, len(user_ids)),
        "and_query": {"user_id": {"or_query": [str(u) for u in user_ids]}},
    }
    data: Any = await client.http.request(route, json=body)
    found: dict[int, str] = {}
    for entry in (data or {}).get("members") or []:
        user = (entry.get("member") or {}).get("user") or {}
        code = entry.get("source_invite_code")
        if user.get("id") and isinstance(code, str) and code:
            found[int(user["id"])] = code
    return found
