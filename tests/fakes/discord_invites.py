"""Joining a SimCord guild *through an invite*, the way Discord does it.

SimCord models invites and members but not the link between them. On Discord, a join through an
invite first raises that invite's ``uses``; a max-use invite reaching its maximum is deleted, and
its INVITE_DELETE arrives *after* the member's GUILD_MEMBER_ADD. ``join`` does exactly that, and
can set the DID_REJOIN member flag (SimCord always sends flags 0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from simcord.actors import MemberActor
from simcord.backend import serializers

if TYPE_CHECKING:
    from simcord import ChannelHandle, Env, GuildHandle, UserHandle
    from simcord.backend.models import Invite

DID_REJOIN = 1 << 0

# backend -> (guild id, user id) -> the invite code a join used, what Discord's members-search
# reports as source_invite_code (tests/fakes/discord_members_search.py)
JOINED_WITH: WeakKeyDictionary[Any, dict[tuple[int, int], str]] = WeakKeyDictionary()


def use_invite(env: Env, code: str) -> Invite | None:
    """Count one use; return the invite when that was its last use (it is now deleted)."""
    invite = env.backend.invites[code]
    invite.uses += 1
    if invite.max_uses and invite.uses >= invite.max_uses:
        del env.backend.invites[code]  # silently for now: the delete event follows the join
        return invite
    return None


def join(
    env: Env,
    guild: GuildHandle,
    user: UserHandle,
    invite: str | None = None,
    *,
    rejoined: bool = False,
) -> MemberActor:
    """``user`` joins ``guild`` (through ``invite`` when given); events in Discord's order."""
    backend = env.backend
    used_up = use_invite(env, invite) if invite is not None else None
    member = backend.add_member(guild.id, user.id)
    if invite is not None:
        JOINED_WITH.setdefault(backend, {})[(guild.id, user.id)] = invite
    payload: dict[str, Any] = dict(
        serializers.member_payload(backend, backend.get_guild(guild.id), member)
    )
    payload["guild_id"] = str(guild.id)
    payload["flags"] = DID_REJOIN if rejoined else 0
    backend.emit("GUILD_MEMBER_ADD", payload)
    if used_up is not None:
        backend.emit(
            "INVITE_DELETE",
            {
                "code": used_up.code,
                "channel_id": str(used_up.channel_id),
                "guild_id": str(used_up.guild_id),
            },
        )
    return MemberActor(env, guild, user)


def member_invite(
    env: Env, channel: ChannelHandle, inviter: MemberActor, *, max_uses: int = 0, max_age: int = 0
) -> str:
    """An invite a member made in the Discord client (INVITE_CREATE, inviter = that member)."""
    invite = env.backend.create_invite(channel.id, inviter.id, max_uses=max_uses, max_age=max_age)
    return invite.code


def leave(env: Env, guild: GuildHandle, member: MemberActor) -> None:
    guild.remove_member(member)


def list_without_vanity(monkeypatch: Any) -> None:
    """Make SimCord's ``GET /guilds/{id}/invites`` leave the vanity invite out, as Discord
    does when its vanity code is only reported by ``GET /guilds/{id}/vanity-url``."""
    from simcord.http import router
    from simcord.http.routes import invites as routes

    def guild_invites(ctx: Any) -> Any:
        guild = ctx.backend.get_guild(ctx.int_arg("guild_id"))
        listed = routes.guild_invites(ctx)
        return [i for i in listed if i.get("code") != guild.vanity_url_code]

    table = [
        (template, guild_invites if handler is routes.guild_invites else handler)
        for template, handler in router._ROUTES["GET"]
    ]
    monkeypatch.setitem(router._ROUTES, "GET", table)
