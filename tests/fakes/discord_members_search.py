"""Discord's undocumented ``POST /guilds/{id}/members-search``, added to SimCord's router.

Shaped like the real answer (discord-api-docs #6936): ``{"members": [{"member": {...},
"source_invite_code": ..., "join_source_type": ..., "inviter_id": ...}], "total_result_count":
n}``, filtered by ``and_query.user_id.or_query``. Like Discord, it lists a new member only
about 20 seconds after they joined. The invite a join used comes from
tests/fakes/discord_invites.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from simcord.backend import serializers
from simcord.http.router import RequestContext, route

from tests.fakes.discord_invites import JOINED_WITH

LISTED_AFTER = 20.0  # seconds
INVITE = 1  # join_source_type of a join through an invite


@route("POST", "/guilds/{guild_id}/members-search")
def members_search(ctx: RequestContext) -> Any:
    backend = ctx.backend
    guild_id = ctx.int_arg("guild_id")
    ctx.require_guild_permissions(guild_id, "manage_guild")
    guild = backend.get_guild(guild_id)
    body = ctx.body()
    wanted = {
        int(u) for u in ((body.get("and_query") or {}).get("user_id") or {}).get("or_query") or []
    }
    now = datetime.fromisoformat(backend.now_iso())
    sources = JOINED_WITH.get(backend, {})
    out = []
    for user_id, member in guild.members.items():
        if wanted and user_id not in wanted:
            continue
        joined = datetime.fromisoformat(member.joined_at) if member.joined_at else now
        if (now - joined).total_seconds() < LISTED_AFTER:
            continue
        code = sources.get((guild_id, user_id))
        invite = backend.invites.get(code) if code else None
        out.append(
            {
                "member": dict(serializers.member_payload(backend, guild, member)),
                "source_invite_code": code,
                "join_source_type": INVITE if code else 0,
                "inviter_id": str(invite.inviter_id) if invite is not None else None,
            }
        )
    limit = int(body.get("limit") or 250)
    return {"guild_id": str(guild_id), "members": out[:limit], "total_result_count": len(out)}
