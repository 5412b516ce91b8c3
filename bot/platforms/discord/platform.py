"""DiscordPlatform: Discord events -> engine, engine effects -> Discord. No business rule here."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import discord

from bot.engine import codes
from bot.engine.admin import Actor
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
from bot.engine.models import Community, OutboxItem, OutboxRoute
from bot.engine.text import Text, t
from bot.platforms.base import DeliveryError
from bot.platforms.discord import join_sources
from bot.platforms.discord.attribution import Verdict
from bot.platforms.discord.client import ReferralClient, shard_options
from bot.platforms.discord.delivery import ROLE_KINDS, WAITING, Deliverer, find_channel
from bot.platforms.discord.diagnostics import diagnose_guild, still_true
from bot.platforms.discord.interactions import Interactions, member_roles
from bot.platforms.discord.invites import InviteTracker
from bot.platforms.discord.render import render
from bot.platforms.discord.slash import build_payload, discord_catalog, tree_hash
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


MAX_INVITES = 30016  # Discord: "Maximum number of invites reached (1000)"
INVITE_PROBLEMS = ("check.discord.invite_cap", "check.discord.invite_refused")


def _invite_code(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def account_created_at(snowflake: int) -> int:
    """Epoch seconds at which a Discord account was created, from its id."""
    return ((snowflake >> 22) + DISCORD_EPOCH_MS) // 1000


def missed_newcomers(guild: discord.Guild, members: list[discord.Member]) -> dict[str, int]:
    """user id -> joined_at of members who first joined after the bot did (so while it was
    there, maybe offline): they may still type a code. Rejoins and earlier members may not."""
    me = guild.me
    since = me.joined_at.timestamp() if me is not None and me.joined_at is not None else None
    if since is None:
        return {}
    return {
        str(m.id): int(m.joined_at.timestamp())
        for m in members
        if m.joined_at is not None and m.joined_at.timestamp() > since and not m.flags.did_rejoin
    }


def state_file_name(settings: DiscordSettings) -> str:
    """One state file per set of shards: processes that split the shards never share one."""
    if settings.shard_ids:
        return f"discord-state-shards-{'-'.join(str(int(x)) for x in settings.shard_ids)}.json"
    return "discord-state.json"


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
        self.state = AdapterState(Path(state_dir or ".") / state_file_name(settings))
        self.interactions = Interactions(self)
        self.problems: dict[int, list[Text]] = {}  # delivery failures only an admin can fix
        self._inviter_codes: dict[tuple[int, str], str] = {}
        self._task: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()
        self.members_intent = members_intent
        self.client = ReferralClient(self, members_intent, **shard_options(settings))
        self.tracker = InviteTracker(self.client, self._joins, self._owner_code, burst_window)
        self.tracker.on_no_access = self._notify_no_access
        self.tracker.on_access = self._access_restored
        self.tracker.on_leave = self._leave
        self.tracker.on_personal_gone = self._personal_gone
        self._ready_seen = False  # guild_available before the first ready is part of it
        self.deliverer = Deliverer(
            self.client, lambda: self.catalog, self._record_problem, self._role_notice
        )

    # -- Platform protocol ------------------------------------------------------------------

    def bind(self, app: App) -> None:
        """Attach to the app without connecting (tests connect the client to a simulator)."""
        self.app = app
        self.catalog = discord_catalog(app.catalog)
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
            for task in g.tasks():
                task.cancel()
        for task in list(self._background):
            task.cancel()
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

    def lane(self, item: OutboxItem) -> str:
        """In order per channel, per member's DMs, per guild's role changes; lanes in parallel,
        so a role reward that waits for an admin never holds back anything else."""
        p = item.payload
        if item.kind == "dm":
            return f"dm:{p.get('user')}"
        if item.kind in ("grant_role", "revoke_role"):
            return f"role:{p.get('community')}:{p.get('role')}"
        return f"channel:{p.get('community')}:{p.get('channel') or ''}"

    def route(self) -> OutboxRoute | None:
        """With explicit shards, this process claims only the outbox items of its shards' guilds
        (the shard is computed in the claim's WHERE), so no item bounces off another process."""
        if self.settings.shard_count > 0 and self.settings.shard_ids:
            return OutboxRoute(
                shard_count=self.settings.shard_count,
                shard_ids=tuple(int(x) for x in self.settings.shard_ids),
            )
        return None

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
            log.warning(
                "event=discord.invite_create_failed guild=%s status=%s code=%s",
                guild.id,
                exc.status,
                exc.code,
            )
            await self._invite_refused(guild, channel, exc)
            raise UserError(
                "discord.invite.cap" if exc.code == MAX_INVITES else "discord.invite.failed"
            ) from exc
        self.state.remember_invite(str(guild.id), invite.code, code)
        self.tracker.personal_created(guild, invite, code)
        self._invites_work_again(guild)
        return invite.url

    def _invites_work_again(self, guild: discord.Guild) -> None:
        """An invite was made: earlier refusals (the cap...) are no longer true."""
        known = self.problems.get(guild.id, [])
        stale = [p for p in known if p.key in INVITE_PROBLEMS]
        if not stale:
            return
        self.problems[guild.id] = [p for p in known if p.key not in INVITE_PROBLEMS]
        for what in [k for k in self.state.data.get("notices", {}).get(str(guild.id), {})]:
            if what.startswith("invite-"):
                self.state.forget_notice(str(guild.id), what)

    async def _invite_refused(
        self, guild: discord.Guild, channel: discord.TextChannel, exc: discord.HTTPException
    ) -> None:
        """Discord refused a personal invite: the admins learn why (once) and /check says it."""
        if exc.status >= 500:
            return  # Discord's own trouble: the member is told to try again
        if exc.code == MAX_INVITES:
            problem, what = t("check.discord.invite_cap", channel=channel.name), "invite-cap"
        else:
            problem = t("check.discord.invite_refused", channel=channel.name, error=exc.code)
            what = f"invite-refused:{exc.code}"
        self._record_problem(guild.id, problem)
        await self._notify_once(guild, what, t("discord.notice.invite_refused", problem=problem))

    async def _personal_gone(self, guild: discord.Guild, invite_codes: list[str]) -> None:
        """Deleted personal invites: their links are forgotten, so the member's next /invite
        makes a new invite for the same referral code."""
        if self.app is None:
            return
        ref = self.ref(guild)
        gone = set(invite_codes)
        urls = [u for u in await self.app.engine.links(ref) if _invite_code(u) in gone]
        if urls:
            await self.app.engine.forget_links(ref, urls)
            log.info("event=discord.personal_invite_gone guild=%s links=%d", guild.id, len(urls))

    async def _clean_up_invites(self, guild: discord.Guild, user_id: int | None) -> None:
        """A member left: delete their personal invites (Discord allows 1000 per server); the
        code stays theirs, and a new invite is made for it if they come back. ``None``: the
        invites of every member who has left (after downtime)."""
        assert self.app is not None
        ref = self.ref(guild)
        if user_id is None:
            urls = await self.app.engine.links_of_departed(ref)
        else:
            urls = await self.app.engine.links_of_member(ref, str(user_id))
        if not urls:
            return
        for url in urls:
            try:
                await self.client.http.delete_invite(
                    _invite_code(url), reason="its member left the server"
                )
            except discord.NotFound:
                pass  # already gone
            except discord.HTTPException as exc:
                log.warning(
                    "event=discord.invite_cleanup_failed guild=%s status=%s", guild.id, exc.status
                )
                return  # kept: tried again on a later leave or by an admin
        await self.app.engine.forget_links(ref, urls)

    async def revoke_referral_link(self, community_id: str, url: str) -> None:
        """`/invite new`: delete the old personal invite (one REST call, from any shard).
        An invite that is already gone is done; a missing permission is final."""
        try:
            await self.client.delete_invite(url.rstrip("/").rsplit("/", 1)[-1])
        except discord.NotFound:
            return
        except discord.Forbidden as exc:
            raise DeliveryError(f"delete invite: {exc.text}", retryable=False) from exc
        except discord.HTTPException as exc:
            raise DeliveryError(
                f"delete invite: {exc.status}", retryable=exc.status >= 500
            ) from exc

    async def _personal_invites(self, ref: CommunityRef, guild_id: str) -> dict[str, str]:
        """invite code -> referral code: the engine's stored links first, the local file second."""
        assert self.app is not None
        known = dict(self.state.invite_codes(guild_id))
        for url, code in (await self.app.engine.links(ref)).items():
            known[_invite_code(url)] = code
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
        """What is wrong now (for /check); items waiting for a fix are tried again at once."""
        await self.retry_waiting(guild)
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
            recorded=[
                p for p in self.problems.get(guild.id, []) if still_true(guild, p) is not None
            ],
        )

    async def retry_waiting(self, guild: discord.Guild) -> None:
        """Role rewards (and their messages) waiting for an admin's fix: try them again now."""
        if self.app is None:
            return
        try:
            woken = await self.app.engine.retry_waiting(self.ref(guild), ROLE_KINDS, WAITING)
        except Exception:
            log.exception("event=discord.retry_waiting_failed guild=%s", guild.id)
            return
        if woken:
            log.info("event=discord.retry_waiting guild=%s items=%d", guild.id, woken)
            self.app.outbox.wake()

    def _record_problem(self, guild_id: int, text: Text) -> None:
        known = self.problems.setdefault(guild_id, [])
        if text not in known:
            known.append(text)
            del known[:-20]

    # -- lifecycle events -------------------------------------------------------------------

    async def ready(self) -> None:
        self._ready_seen = True
        for guild in list(self.client.guilds):
            try:
                await self.guild_ready(guild)
            except Exception:
                log.exception("event=discord.guild_ready_failed guild=%s", guild.id)

    async def guild_available(self, guild: discord.Guild) -> None:
        """A guild back after an outage (or a shard's new session): reconcile as on ready."""
        if not self._ready_seen:
            return  # the first ready reconciles every guild
        try:
            await self.guild_ready(guild, fresh=True)
        except Exception:
            log.exception("event=discord.guild_ready_failed guild=%s", guild.id)

    async def permissions_changed(self, guild: discord.Guild) -> None:
        """The bot's roles, a role's permissions or the role list changed."""
        if self.app is None or guild.me is None:
            return
        await self.tracker.permissions_changed(guild)
        await self.retry_waiting(guild)

    async def guild_ready(self, guild: discord.Guild, *, fresh: bool = False) -> None:
        """After downtime or on joining: reconcile members, refill the invite cache, report.

        ``fresh``: the guild comes back from an outage; discord.py keeps the members it had
        cached before, so who is there now is asked of Discord again (one member chunk)."""
        if self.app is None:
            return
        ref = self.ref(guild)
        if self.members_intent:
            members = list(guild.members)
            if fresh or not guild.chunked:
                members = await guild.chunk()
            humans = [m for m in members if not m.bot]
            result = await self.app.engine.reconcile(
                ref, [self.user_ref(m) for m in humans], missed_newcomers(guild, humans)
            )
            if result.left:
                try:
                    await self._clean_up_invites(guild, None)
                except Exception:
                    log.exception("event=discord.invite_cleanup_failed guild=%s", guild.id)
        else:
            await self.app.engine.community(ref)
            await self._notify_once(
                guild,
                "no-members-intent",
                t("discord.notice.no_members_intent", guild=guild.name),
            )
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
        ambiguous = [
            (m.id, v.candidates) for m, v in zip(members, verdicts, strict=True) if v.candidates
        ]
        if ambiguous and self.settings.members_search:
            task = asyncio.create_task(
                self._settle_from_join_data(guild, ambiguous), name="discord-members-search"
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        for event, result in zip(events, results, strict=True):
            if isinstance(result, BaseException):
                log.error(
                    "event=discord.join_failed guild=%s user=%s error=%r",
                    guild.id,
                    event.user.user_id,
                    result,
                )

    async def _settle_from_join_data(
        self, guild: discord.Guild, joins: list[tuple[int, tuple[str, ...]]]
    ) -> None:
        """discord.members_search: credit an ambiguous join only when Discord's own join data
        names an invite that is one of its candidates (see join_sources.py)."""
        await asyncio.sleep(join_sources.SEARCH_AFTER)
        if self.app is None:
            return
        try:
            used = await join_sources.join_invites(self.client, guild.id, [u for u, _ in joins])
        except (discord.HTTPException, TimeoutError) as exc:
            log.warning("event=discord.members_search_failed guild=%s error=%s", guild.id, exc)
            return
        personal = self.tracker.state(guild.id).personal
        actor = Actor(join_sources.ACTOR_ID, join_sources.ACTOR_NAME)
        for user_id, candidates in joins:
            code = personal.get(used.get(user_id, ""))
            if code is None or code not in candidates:
                continue
            try:
                await self.app.engine.settle_join(self.ref(guild), actor, str(user_id), code)
                log.info("event=discord.join_settled guild=%s by=members-search", guild.id)
            except UserError as exc:  # already credited, left meanwhile...
                log.info("event=discord.join_not_settled guild=%s why=%s", guild.id, exc.text.key)

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
        if self.tracker.left(guild_id, user_id):
            return  # the join still waits in a burst window: the leave follows it
        await self._leave(guild, user_id)

    async def _leave(self, guild: discord.Guild, user_id: int) -> None:
        if self.app is None:
            return
        await self.app.engine.member_left(MemberLeft(self.ref(guild), str(user_id)))
        try:
            await self._clean_up_invites(guild, user_id)
        except Exception:
            log.exception("event=discord.invite_cleanup_failed guild=%s", guild.id)

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
        await self._notify_once(
            guild, "no-manage-server", t("discord.notice.no_manage_server", guild=guild.name)
        )

    async def _access_restored(self, guild: discord.Guild) -> None:
        """Manage Server is back: a later loss is worth telling again."""
        self.state.forget_notice(str(guild.id), "no-manage-server")

    async def _role_notice(self, guild: discord.Guild, problem: Text | None, key: str) -> None:
        if problem is None:  # the role was given: it is fixed, its messages may go now
            if self.state.notified(str(guild.id), key):
                self.state.forget_notice(str(guild.id), key)
                await self.retry_waiting(guild)
            return
        await self._notify_once(
            guild, key, t("discord.notice.role_blocked", guild=guild.name, problem=problem)
        )

    async def _notify_once(self, guild: discord.Guild, what: str, text: Text) -> None:
        """Tell the admin channel (or else the owner) once, until ``forget_notice``."""
        if self.app is None or self.state.notified(str(guild.id), what):
            return
        self.state.mark_notified(str(guild.id), what)
        rendered = render(self.catalog, text)
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
