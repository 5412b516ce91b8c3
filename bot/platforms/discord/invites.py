"""The invite tracker: a cache of every invite's uses and burst windows of joins.

The first join of a quiet guild opens a window (``burst_window`` seconds); every join that
arrives meanwhile waits in it. When the window closes, ONE fetch of the guild's invites serves
all of them: the uses since the previous fetch are matched to the joins (see attribution.py).
INVITE_CREATE and INVITE_DELETE keep the cache fresh between fetches.

Without Manage Server the bot cannot read uses: joins are handed on at once as unknown, members
use /code, and the admins are told (once, and in /check).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import discord

from bot.platforms.discord.attribution import (
    ORGANIC,
    UNKNOWN,
    UNOWNED,
    InviteSnapshot,
    Verdict,
    assign,
    diff,
)

log = logging.getLogger(__name__)

# (guild, members of the window, their verdicts) -> hand the joins to the engine
Deliver = Callable[[discord.Guild, list[discord.Member], list[Verdict]], Awaitable[None]]
# (guild, inviter user id) -> that member's referral code, or None
OwnerCode = Callable[[discord.Guild, str], Awaitable[str | None]]


def snapshot(invite: discord.Invite) -> InviteSnapshot:
    expires = invite.expires_at.timestamp() if invite.expires_at is not None else None
    return InviteSnapshot(
        code=invite.code,
        uses=invite.uses or 0,
        max_uses=invite.max_uses or 0,
        expires_at=expires,
        inviter_id=str(invite.inviter.id) if invite.inviter is not None else None,
    )


@dataclass(slots=True)
class GuildInvites:
    baseline: dict[str, InviteSnapshot] | None = None  # None: never fetched
    access: bool = True  # False: no Manage Server, uses cannot be read
    vanity_code: str | None = None
    vanity_uses: int = 0
    pending: list[discord.Member] = field(default_factory=list)
    window_start: float = 0.0
    task: asyncio.Task | None = None
    carried: set[str] = field(default_factory=set)  # sources with unexplained uses
    personal: dict[str, str] = field(default_factory=dict)  # invite code -> referral code
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class InviteTracker:
    def __init__(
        self,
        client: discord.Client,
        deliver: Deliver,
        owner_code: OwnerCode,
        burst_window: float = 1.5,
    ) -> None:
        self.client = client
        self.deliver = deliver
        self.owner_code = owner_code
        self.burst_window = burst_window
        self.guilds: dict[int, GuildInvites] = {}
        self.fetches = 0  # REST reads of invite uses (benchmarks, tests)
        self.on_no_access: Callable[[discord.Guild], Awaitable[None]] | None = None

    def state(self, guild_id: int) -> GuildInvites:
        return self.guilds.setdefault(guild_id, GuildInvites())

    # -- the cache --------------------------------------------------------------------------

    async def fill(self, guild: discord.Guild, personal: dict[str, str]) -> None:
        """On ready or on joining a guild: read every invite's uses (one fetch)."""
        g = self.state(guild.id)
        g.personal.update(personal)
        async with g.lock:
            after = await self._fetch(guild, g)
            if after is not None:
                g.baseline = after
                g.vanity_code, g.vanity_uses = await self._vanity(guild)

    async def _fetch(
        self, guild: discord.Guild, g: GuildInvites
    ) -> dict[str, InviteSnapshot] | None:
        if not guild.me.guild_permissions.manage_guild:
            await self._lost_access(guild, g)
            return None
        try:
            self.fetches += 1
            invites = await guild.invites()
        except discord.Forbidden:
            await self._lost_access(guild, g)
            return None
        except discord.HTTPException as exc:
            log.warning("event=discord.invites_fetch_failed guild=%s error=%s", guild.id, exc)
            return None
        g.access = True
        return {i.code: snapshot(i) for i in invites}

    async def _lost_access(self, guild: discord.Guild, g: GuildInvites) -> None:
        was = g.access
        g.access = False
        g.baseline = None
        if was:
            log.warning(
                "event=discord.attribution_fallback guild=%s reason=missing-manage-server "
                "fix='give the bot Manage Server; until then members use /code'",
                guild.id,
            )
        if self.on_no_access is not None:
            await self.on_no_access(guild)

    async def _vanity(self, guild: discord.Guild) -> tuple[str | None, int]:
        try:
            data = await self.client.http.get_vanity_code(guild.id)
        except discord.HTTPException:
            return None, 0
        return data.get("code"), int(data.get("uses") or 0)

    def invite_created(self, invite: discord.Invite) -> None:
        guild = invite.guild
        if guild is None:
            return
        g = self.state(guild.id)
        if g.baseline is not None and invite.code not in g.baseline:
            g.baseline[invite.code] = snapshot(invite)

    def invite_deleted(self, guild_id: int, code: str) -> None:
        g = self.state(guild_id)
        if g.baseline is None or g.pending or g.task is not None:
            return  # a window is open: its fetch sees the invite vanished and judges it
        g.baseline.pop(code, None)

    def personal_created(self, guild: discord.Guild, invite: discord.Invite, code: str) -> None:
        g = self.state(guild.id)
        g.personal[invite.code] = code
        if g.baseline is not None:
            g.baseline.setdefault(invite.code, snapshot(invite))

    # -- joins ------------------------------------------------------------------------------

    async def joined(self, member: discord.Member) -> None:
        g = self.state(member.guild.id)
        if not g.access or not member.guild.me.guild_permissions.manage_guild:
            if g.access:
                await self._lost_access(member.guild, g)
            await self.deliver(member.guild, [member], [UNKNOWN])
            return
        g.pending.append(member)
        if g.task is None:
            g.window_start = discord.utils.utcnow().timestamp()
            g.task = asyncio.create_task(self._window(member.guild), name="discord-join-window")

    async def _window(self, guild: discord.Guild) -> None:
        g = self.state(guild.id)
        await asyncio.sleep(self.burst_window)
        members, g.pending, g.task = g.pending, [], None
        try:
            async with g.lock:
                verdicts = await self._decide(guild, g, len(members))
        except Exception:
            log.exception("event=discord.window_failed guild=%s", guild.id)
            verdicts = [UNKNOWN] * len(members)
        await self.deliver(guild, members, verdicts)

    async def _decide(self, guild: discord.Guild, g: GuildInvites, joins: int) -> list[Verdict]:
        before = g.baseline
        after = await self._fetch(guild, g)
        if after is None:
            return [UNKNOWN] * joins
        g.baseline = after
        if before is None:  # no earlier counts to compare with
            return [UNKNOWN] * joins
        uses = diff(before, after, g.window_start)
        if g.vanity_code is not None and g.vanity_code not in after:
            code, vanity_uses = await self._vanity(guild)
            if code == g.vanity_code and vanity_uses > g.vanity_uses:
                uses.exact[g.vanity_code] += vanity_uses - g.vanity_uses
            g.vanity_uses = vanity_uses
        exact: Counter[str] = Counter()
        for code, n in uses.exact.items():
            exact[await self._source(guild, g, before.get(code) or after[code])] += n
        maybe = {await self._source(guild, g, before[code]) for code in uses.maybe}
        decision = assign(joins, exact, maybe | g.carried)
        g.carried = decision.leftover
        return decision.verdicts

    async def _source(self, guild: discord.Guild, g: GuildInvites, invite: InviteSnapshot) -> str:
        """The referral code an invite credits, ORGANIC, or UNOWNED."""
        if invite.code == g.vanity_code:
            return ORGANIC
        if invite.code in g.personal:
            return g.personal[invite.code]
        if invite.inviter_id is None:
            return ORGANIC
        me = self.client.user
        if me is not None and invite.inviter_id == str(me.id):
            log.warning(
                "event=discord.invite_owner_unknown guild=%s invite=%s", guild.id, invite.code
            )
            return UNOWNED
        return await self.owner_code(guild, invite.inviter_id) or UNOWNED
