"""DiscordPlatform: Discord events -> engine, engine effects -> Discord. No business rule here."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import discord

from bot.engine import codes
from bot.engine.context import Capabilities
from bot.engine.errors import UserError
from bot.engine.events import (
    CommunityRef,
    JoinSource,
    MemberJoined,
    MemberLeft,
    MessagePosted,
    UserRef,
)
from bot.engine.models import Community, OutboxItem
from bot.engine.text import Text, t
from bot.platforms.discord.attribution import Verdict
from bot.platforms.discord.client import ReferralClient, shard_options
from bot.platforms.discord.delivery import Deliverer, find_channel
from bot.platforms.discord.diagnostics import diagnose_guild
from bot.platforms.discord.interactions import Interactions, member_roles
from bot.platforms.discord.invites import InviteTracker
from bot.platforms.discord.render import render
from bot.platforms.discord.slash import build_payload, tree_hash
from bot.platforms.discord.startup import start_failure
from bot.platforms.discord.state import AdapterState, state_dir_for
from commands.registry import REGISTRY
from config.i18n import Catalog

if TYPE_CHECKING:
    from bot.app import App
    from bot.supervise import StartFailure
    from config.settings import DiscordSettings

log = logging.getLogger(__name__)
PLATFORM = "discord"
DISCORD_EPOCH_MS = 1420070400000
SOURCES = {
    "invite": JoinSource.INVITE_LINK,
    "ambiguous": JoinSource.AMBIGUOUS,
    "organic": JoinSource.ORGANIC,
    "unknown": JoinSource.UNKNOWN,
}


def account_created_at(snowflake: int) -> int:
    """Epoch seconds at which a Discord account was created, from its id."""
    return ((snowflake >> 22) + DISCORD_EPOCH_MS) // 1000


class DiscordPlatform:
    name = PLATFORM
    capabilities = Capabilities(
        roles=True,
        buttons=True,
        dms=True,
        dms_intrusive=True,
        account_age=True,
        channel_access=False,
    )

    def __init__(
        self,
        settings: DiscordSettings,
        token: str,
        *,
        burst_window: float = 1.5,
        state_dir: Path | None = None,
        members_intent: bool = True,
    ) -> None:
        self.settings = settings
        self.token = token
        self.burst_window = burst_window
        self.state_dir = state_dir
        self.app: App | None = None
        self.catalog = Catalog()
        self.state = AdapterState(Path(state_dir or ".") / "discord-state.json")
        self.interactions = Interactions(self)
        self.problems: dict[int, list[Text]] = {}  # delivery failures only an admin can fix
        self._inviter_codes: dict[tuple[int, str], str] = {}
        self._task: asyncio.Task | None = None
        self.members_intent = members_intent
        self.client = ReferralClient(self, members_intent, **shard_options(settings))
        self.tracker = InviteTracker(self.client, self._joins, self._owner_code, burst_window)
        self.tracker.on_no_access = self._notify_no_access
        self.deliverer = Deliverer(self.client, lambda: self.catalog, self._record_problem)

    # -- Platform protocol ------------------------------------------------------------------

    def bind(self, app: App) -> None:
        """Attach to the app without connecting (tests connect the client to a simulator)."""
        self.app = app
        self.catalog = app.catalog
        if self.state_dir is None:
            self.state = AdapterState(
                state_dir_for(app.settings.database.url) / "discord-state.json"
            )

    async def start(self, app: App) -> None:
        self.bind(app)
        if self.client.is_closed():  # a retry after a failed start: a closed client stays closed
            await self._rebuild(self.members_intent)
        await self.client.login(self.token)
        self._task = asyncio.create_task(self._connect(), name="discord-gateway")
        self._task.add_done_callback(_gateway_ended)

    async def _connect(self) -> None:
        try:
            await self.client.connect(reconnect=True)
        except discord.PrivilegedIntentsRequired:
            log.error(
                "event=discord.members_intent_missing fix='Developer Portal > your application "
                "> Bot > Privileged Gateway Intents > enable Server Members Intent'; running "
                "without it: joins, leaves and role changes are not seen"
            )
            await self._rebuild_without_members()
            await self.client.login(self.token)
            await self.client.connect(reconnect=True)

    async def _rebuild_without_members(self) -> None:
        await self._rebuild(False)

    async def _rebuild(self, members_intent: bool) -> None:
        if not self.client.is_closed():
            await self.client.close()
        self.members_intent = members_intent
        self.client = ReferralClient(self, members_intent, **shard_options(self.settings))
        self.tracker.client = self.client
        self.deliverer.client = self.client

    async def stop(self) -> None:
        for g in self.tracker.guilds.values():
            if g.task is not None:
                g.task.cancel()
        if not self.client.is_closed():
            await self.client.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        self.app = None

    def start_failure(self, exc: BaseException) -> StartFailure:
        """For the start-up supervisor: a rejected token is final, the rest is retried."""
        return start_failure(exc, self.settings, self.catalog)

    def is_connected(self) -> bool:
        if self._task is not None and self._task.done():  # the gateway connection gave up
            return False
        return self.client.is_ready() and not self.client.is_closed()

    async def deliver(self, item: OutboxItem) -> None:
        await self.deliverer.deliver(item)

    async def create_referral_link(self, community: Community, code: str) -> str:
        """A bot-owned personal invite (never expires, unique) for one referral code."""
        guild = self.client.get_guild(int(community.external_id))
        if guild is None:
            raise UserError("discord.invite.no_guild")
        channel = find_channel(guild, self.settings.invite_channel or None)
        if channel is None:
            raise UserError("discord.invite.no_channel", channel=self.settings.invite_channel)
        if not channel.permissions_for(guild.me).create_instant_invite:
            raise UserError("discord.invite.no_permission", channel=channel.name)
        try:
            invite = await channel.create_invite(
                max_age=0, max_uses=0, unique=True, reason=f"referral code {code}"
            )
        except discord.HTTPException as exc:
            log.warning("event=discord.invite_create_failed guild=%s error=%s", guild.id, exc)
            raise UserError("discord.invite.failed") from exc
        self.state.remember_invite(str(guild.id), invite.code, code)
        self.tracker.personal_created(guild, invite, code)
        return invite.url

    async def _personal_invites(self, ref: CommunityRef, guild_id: str) -> dict[str, str]:
        """invite code -> referral code: the engine's stored links first, the local file second."""
        assert self.app is not None
        known = dict(self.state.invite_codes(guild_id))
        for url, code in (await self.app.engine.links(ref)).items():
            known[url.rstrip("/").rsplit("/", 1)[-1]] = code
        return known

    # -- identities -------------------------------------------------------------------------

    def ref(self, guild: discord.Guild) -> CommunityRef:
        return CommunityRef(PLATFORM, str(guild.id), guild.name)

    def user_ref(self, member: discord.abc.User, locale: str | None = None) -> UserRef:
        return UserRef(str(member.id), member.display_name, account_created_at(member.id), locale)

    # -- commands ---------------------------------------------------------------------------

    async def sync_commands(self) -> None:
        """Sync the command tree, globally or per configured guild, only when it changed."""
        app_id = self.client.application_id
        if app_id is None:
            return
        payload = build_payload(self.catalog, REGISTRY.all())
        digest = tree_hash(payload)
        http = self.client.http
        scopes: list[str | None] = list(self.settings.guild_ids) or [None]
        for guild_id in scopes:
            scope = f"{app_id}:{guild_id or 'global'}"
            if self.state.command_hash(scope) == digest:
                continue
            if guild_id is None:
                await http.bulk_upsert_global_commands(app_id, payload)  # type: ignore[arg-type]
            else:
                await http.bulk_upsert_guild_commands(app_id, int(guild_id), payload)  # type: ignore[arg-type]
            self.state.save_command_hash(scope, digest)
            log.info("event=discord.commands_synced scope=%s commands=%d", scope, len(payload))

    async def diagnose(self, guild: discord.Guild) -> list[Text]:
        overview, community_id = None, None
        if self.app is not None:
            try:
                overview = await self.app.engine.overview(self.ref(guild))
                community_id = (await self.app.engine.community(self.ref(guild))).id
            except Exception:
                log.exception("event=discord.diagnose_overview_failed guild=%s", guild.id)
        return diagnose_guild(
            guild,
            members_intent=self.members_intent,
            invite_channel=self.settings.invite_channel,
            overview=overview,
            community_id=community_id,
            recorded=list(self.problems.get(guild.id, [])),
        )

    def _record_problem(self, guild_id: int, text: Text) -> None:
        known = self.problems.setdefault(guild_id, [])
        if text not in known:
            known.append(text)
            del known[:-20]

    # -- lifecycle events -------------------------------------------------------------------

    async def ready(self) -> None:
        for guild in list(self.client.guilds):
            try:
                await self.guild_ready(guild)
            except Exception:
                log.exception("event=discord.guild_ready_failed guild=%s", guild.id)

    async def guild_ready(self, guild: discord.Guild) -> None:
        """After downtime or on joining: reconcile members, refill the invite cache, report."""
        if self.app is None:
            return
        ref = self.ref(guild)
        if self.members_intent:
            if not guild.chunked:
                await guild.chunk()
            present = [self.user_ref(m) for m in guild.members if not m.bot]
            await self.app.engine.reconcile(ref, present)
        else:
            await self.app.engine.community(ref)
        await self.tracker.fill(guild, await self._personal_invites(ref, str(guild.id)))
        for problem in await self.diagnose(guild):
            log.warning(
                "event=discord.check guild=%s problem=%r",
                guild.id,
                render(self.catalog, problem).text,
            )

    # -- member events ----------------------------------------------------------------------

    async def member_joined(self, member: discord.Member) -> None:
        if self.app is None or member.bot:
            return
        await self.tracker.joined(member)

    async def _joins(
        self, guild: discord.Guild, members: list[discord.Member], verdicts: list[Verdict]
    ) -> None:
        if self.app is None:
            return
        ref = self.ref(guild)
        events = [
            MemberJoined(
                ref,
                self.user_ref(m),
                SOURCES[v.kind],
                v.code,
                v.candidates,
                roles=member_roles(m),
                rejoined=m.flags.did_rejoin,
            )
            for m, v in zip(members, verdicts, strict=True)
        ]
        results = await asyncio.gather(
            *(self.app.engine.member_joined(e) for e in events), return_exceptions=True
        )
        for event, result in zip(events, results, strict=True):
            if isinstance(result, BaseException):
                log.error(
                    "event=discord.join_failed guild=%s user=%s error=%r",
                    guild.id,
                    event.user.user_id,
                    result,
                )

    async def _owner_code(self, guild: discord.Guild, user_id: str) -> str | None:
        """The referral code of a member who made an invite themselves (issued if missing)."""
        key = (guild.id, user_id)
        if key in self._inviter_codes:
            return self._inviter_codes[key]
        member = guild.get_member(int(user_id))
        if self.app is None or member is None or member.bot:
            return None
        ref, user = self.ref(guild), self.user_ref(member)
        try:
            shown = (await self.app.engine.status(ref, user)).code
            if shown is None:
                shown = (await self.app.engine.invite(ref, user, self.create_referral_link)).code
        except UserError as exc:
            log.warning("event=discord.inviter_code_failed guild=%s error=%s", guild.id, exc)
            return None
        code = codes.normalize(shown)
        if code is not None:
            self._inviter_codes[key] = code
        return code

    async def member_left(self, guild_id: int, user_id: int) -> None:
        guild = self.client.get_guild(guild_id)
        if self.app is None or guild is None:
            return
        await self.app.engine.member_left(MemberLeft(self.ref(guild), str(user_id)))

    async def roles_changed(self, member: discord.Member) -> None:
        if self.app is None or member.bot:
            return
        await self.app.engine.roles_changed(
            self.ref(member.guild), str(member.id), member_roles(member)
        )

    def message_posted(self, message: discord.Message) -> None:
        author = message.author
        if (
            self.app is None
            or message.guild is None
            or author.bot
            or message.webhook_id is not None
            or not isinstance(author, discord.Member)
            or message.type not in (discord.MessageType.default, discord.MessageType.reply)
        ):
            return
        self.app.engine.message_posted(
            MessagePosted(self.ref(message.guild), self.user_ref(author), member_roles(author))
        )

    # -- admin notices ----------------------------------------------------------------------

    async def _notify_no_access(self, guild: discord.Guild) -> None:
        """Once per guild: attribution falls back to typed codes until Manage Server is given."""
        if self.app is None or self.state.notified(str(guild.id), "no-manage-server"):
            return
        self.state.mark_notified(str(guild.id), "no-manage-server")
        rendered = render(self.catalog, t("discord.notice.no_manage_server", guild=guild.name))
        try:
            overview = await self.app.engine.overview(self.ref(guild))
            community = await self.app.engine.community(self.ref(guild))
            s = overview.settings
            channel = None
            if s.admin_channel and s.admin_community_id == community.id:
                channel = find_channel(guild, s.admin_channel)
            if channel is not None:
                await channel.send(rendered.text, allowed_mentions=rendered.allowed_mentions)
            elif guild.owner_id is not None:
                owner = guild.get_member(guild.owner_id) or await guild.fetch_member(guild.owner_id)
                await owner.send(rendered.text, allowed_mentions=rendered.allowed_mentions)
        except (discord.HTTPException, UserError) as exc:
            log.warning("event=discord.notice_failed guild=%s error=%s", guild.id, exc)


def _gateway_ended(task: asyncio.Task) -> None:
    """One line when the gateway connection stops for good (it reconnects by itself before)."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error(
            "event=discord.gateway_stopped error=%r; /readyz reports discord as disconnected",
            f"{type(exc).__name__}: {exc}"[:300],
        )
