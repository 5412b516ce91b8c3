"""The invite tracker: a cache of every invite's uses and burst windows of joins.

The first join of a quiet guild opens a window (``burst_window`` seconds); every join that
arrives meanwhile waits in it. When the window closes, ONE fetch of the guild's invites serves
all of them: the uses since the previous fetch are matched to the joins (see attribution.py).
INVITE_CREATE and INVITE_DELETE keep the cache fresh between fetches.

Without Manage Server the bot cannot read uses: joins are handed on at once as unknown, members
use /code, and the admins are told (once, and in /check). When the permission comes back, the
cache is rebuilt and attribution resumes.

A fetch that fails or times out leaves no baseline: the uses it would have explained cannot be
told apart from later ones, so the joins of that window are unknown, the baseline is dropped,
and a fresh fetch rebuilds it before anything is credited again.

A leave that arrives while its member's join still waits in a window is held back and handed on
right after that window's joins, so the engine always sees the join first.
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
# (guild, user id) -> hand a leave to the engine
Leave = Callable[[discord.Guild, int], Awaitable[None]]

FETCH_TIMEOUT = 10.0  # seconds; a hung invite fetch counts as a failed one
REBUILD_AFTER = (2.0, 10.0, 30.0, 60.0)  # waits before re-fetching a lost baseline


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
class Window:
    """The joins of one burst window, until they have been handed to the engine."""

    start: float
    members: list[discord.Member] = field(default_factory=list)
    leaves: list[int] = field(default_factory=list)  # left before the window was handed on
    task: asyncio.Task | None = None

    def has(self, user_id: int) -> bool:
        return any(m.id == user_id for m in self.members)


@dataclass(slots=True)
class GuildInvites:
    baseline: dict[str, InviteSnapshot] | None = None  # None: never fetched, or lost
    access: bool = True  # False: no Manage Server, uses cannot be read
    vanity_code: str | None = None
    vanity_uses: int = 0
    open: Window | None = None  # the window still collecting joins
    windows: list[Window] = field(default_factory=list)  # every window not yet handed on
    carried: set[str] = field(default_factory=set)  # sources with unexplained uses
    personal: dict[str, str] = field(default_factory=dict)  # invite code -> referral code
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    rebuild: asyncio.Task | None = None
    failures: int = 0  # fetches failed in a row

    @property
    def pending(self) -> list[discord.Member]:
        return [m for w in self.windows for m in w.members]

    @property
    def task(self) -> asyncio.Task | None:
        return self.open.task if self.open is not None else None

    def tasks(self) -> list[asyncio.Task]:
        found = [w.task for w in self.windows if w.task is not None]
        return found + ([self.rebuild] if self.rebuild is not None else [])


class InviteTracker:
    def __init__(
        self,
        client: discord.Client,
        deliver: Deliver,
        owner_code: OwnerCode,
        burst_window: float = 1.5,
        *,
        fetch_timeout: float = FETCH_TIMEOUT,
    ) -> None:
        self.client = client
        self.deliver = deliver
        self.owner_code = owner_code
        self.burst_window = burst_window
        self.fetch_timeout = fetch_timeout
        self.guilds: dict[int, GuildInvites] = {}
        self.fetches = 0  # REST reads of invite uses (benchmarks, tests)
        self.on_no_access: Callable[[discord.Guild], Awaitable[None]] | None = None
        self.on_access: Callable[[discord.Guild], Awaitable[None]] | None = None
        self.on_leave: Leave | None = None
        # (guild, invite codes): personal invites that no longer exist on Discord
        self.on_personal_gone: Callable[[discord.Guild, list[str]], Awaitable[None]] | None = None

    def state(self, guild_id: int) -> GuildInvites:
        return self.guilds.setdefault(guild_id, GuildInvites())

    # -- the cache --------------------------------------------------------------------------

    async def fill(self, guild: discord.Guild, personal: dict[str, str]) -> None:
        """On ready or on joining a guild: read every invite's uses (one fetch)."""
        g = self.state(guild.id)
        g.personal.update(personal)
        known = set(g.personal)  # an invite made while the fetch runs is not "gone"
        async with g.lock:
            after = await self._fetch(guild, g)
            if after is not None:
                g.baseline = after
                g.vanity_code, g.vanity_uses = await self._vanity(guild)
        if after is not None:
            await self._personal_gone(guild, g, sorted(c for c in known if c not in after))

    async def _personal_gone(self, guild: discord.Guild, g: GuildInvites, codes: list[str]) -> None:
        """Personal invites deleted on Discord (by an admin, or while the bot was away)."""
        if not codes:
            return
        for code in codes:
            g.personal.pop(code, None)
        if self.on_personal_gone is not None:
            try:
                await self.on_personal_gone(guild, codes)
            except Exception:
                log.exception("event=discord.personal_invite_gone_failed guild=%s", guild.id)

    async def _fetch(
        self, guild: discord.Guild, g: GuildInvites
    ) -> dict[str, InviteSnapshot] | None:
        if not guild.me.guild_permissions.manage_guild:
            await self._lost_access(guild, g)
            return None
        try:
            self.fetches += 1
            async with asyncio.timeout(self.fetch_timeout):
                invites = await guild.invites()
        except discord.Forbidden:
            await self._lost_access(guild, g)
            return None
        except (discord.HTTPException, TimeoutError) as exc:
            log.warning(
                "event=discord.invites_fetch_failed guild=%s error=%s",
                guild.id,
                exc.__class__.__name__ if isinstance(exc, TimeoutError) else exc,
            )
            self._lose_baseline(guild, g)
            return None
        g.failures = 0
        if not g.access:
            g.access = True
            log.info("event=discord.attribution_resumed guild=%s", guild.id)
            if self.on_access is not None:
                await self.on_access(guild)
        return {i.code: snapshot(i) for i in invites}

    def _lose_baseline(self, guild: discord.Guild, g: GuildInvites) -> None:
        """Counters of unknown age must never be compared with: drop them, fetch afresh."""
        g.baseline = None
        g.carried = set()
        g.failures += 1
        if g.rebuild is None or g.rebuild.done():
            wait = REBUILD_AFTER[min(g.failures, len(REBUILD_AFTER)) - 1]
            g.rebuild = asyncio.create_task(
                self._rebuild(guild, wait), name="discord-invite-rebuild"
            )

    async def _rebuild(self, guild: discord.Guild, wait: float) -> None:
        await asyncio.sleep(wait)
        g = self.state(guild.id)
        g.rebuild = None
        if g.baseline is not None or g.windows or not g.access:
            return  # rebuilt already, or the next window's fetch will rebuild it
        try:
            await self.fill(guild, {})
        except Exception:
            log.exception("event=discord.invite_rebuild_failed guild=%s", guild.id)

    async def permissions_changed(self, guild: discord.Guild) -> None:
        """The bot's roles or their permissions changed: lose or regain attribution now."""
        g = self.state(guild.id)
        if guild.me is None:
            return
        if not guild.me.guild_permissions.manage_guild:
            if g.access:
                await self._lost_access(guild, g)
        elif not g.access:
            await self.fill(guild, {})

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

    async def invite_deleted(self, guild: discord.Guild, code: str) -> None:
        g = self.state(guild.id)
        if g.baseline is not None and not g.windows:
            g.baseline.pop(code, None)
        # else a window is open: its fetch sees the invite vanished and judges it
        if code in g.personal and not g.windows:
            await self._personal_gone(guild, g, [code])

    def personal_created(self, guild: discord.Guild, invite: discord.Invite, code: str) -> None:
        g = self.state(guild.id)
        g.personal[invite.code] = code
        if g.baseline is not None:
            g.baseline.setdefault(invite.code, snapshot(invite))

    # -- joins ------------------------------------------------------------------------------

    async def joined(self, member: discord.Member) -> None:
        g = self.state(member.guild.id)
        if not member.guild.me.guild_permissions.manage_guild:
            if g.access:
                await self._lost_access(member.guild, g)
            await self.deliver(member.guild, [member], [UNKNOWN])
            return
        # Without a baseline (never fetched, lost, or Manage Server just given back) the
        # window's fetch builds one; its joins are unknown.
        if g.open is None:
            window = Window(start=discord.utils.utcnow().timestamp())
            g.open = window
            g.windows.append(window)
            window.task = asyncio.create_task(
                self._window(member.guild, window), name="discord-join-window"
            )
        g.open.members.append(member)

    def waiting(self, guild_id: int, user_id: int) -> Window | None:
        """The window in which this member's join still waits, if any."""
        g = self.guilds.get(guild_id)
        if g is None:
            return None
        return next((w for w in g.windows if w.has(user_id)), None)

    async def join_recorded(self, guild_id: int, user_id: int) -> None:
        """Wait until this member's join (if one is waiting) has reached the engine."""
        window = self.waiting(guild_id, user_id)
        if window is not None and window.task is not None:
            await asyncio.wait({window.task}, timeout=self.burst_window + self.fetch_timeout + 5)

    def left(self, guild_id: int, user_id: int) -> bool:
        """True when the leave must wait for the member's join, still in a window."""
        window = self.waiting(guild_id, user_id)
        if window is None:
            return False
        window.leaves.append(user_id)
        return True

    async def _window(self, guild: discord.Guild, window: Window) -> None:
        g = self.state(guild.id)
        try:
            await asyncio.sleep(self.burst_window)
            if g.open is window:
                g.open = None
            members = list(window.members)
            try:
                async with g.lock:
                    verdicts = await self._decide(guild, g, len(members), window.start)
            except Exception:
                log.exception("event=discord.window_failed guild=%s", guild.id)
                verdicts = [UNKNOWN] * len(members)
                self._lose_baseline(guild, g)
            await self.deliver(guild, members, verdicts)
            if self.on_leave is not None:
                for user_id in window.leaves:
                    await self.on_leave(guild, user_id)
        finally:
            if g.open is window:
                g.open = None
            if window in g.windows:
                g.windows.remove(window)

    async def _decide(
        self, guild: discord.Guild, g: GuildInvites, joins: int, window_start: float
    ) -> list[Verdict]:
        before = g.baseline
        after = await self._fetch(guild, g)
        if after is None:
            return [UNKNOWN] * joins
        g.baseline = after
        if before is None:  # no earlier counts to compare with: this fetch is the new baseline
            g.vanity_code, g.vanity_uses = await self._vanity(guild)
            return [UNKNOWN] * joins
        uses = diff(before, after, window_start)
        exact: Counter[str] = Counter()
        if g.vanity_code is not None and g.vanity_code not in after:
            # The vanity URL's uses come from their own endpoint, never from the invite list.
            code, vanity_uses = await self._vanity(guild)
            if code == g.vanity_code and vanity_uses > g.vanity_uses:
                exact[ORGANIC] += vanity_uses - g.vanity_uses
            g.vanity_uses = vanity_uses
        for code, n in uses.exact.items():
            exact[await self._source(guild, g, before.get(code) or after[code])] += n
        maybe = {await self._source(guild, g, before[code]) for code in uses.maybe}
        await self._personal_gone(guild, g, [c for c in uses.maybe if c in g.personal])
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
