"""The Telegram platform: python-telegram-bot's Application, paced sends, outbox delivery.

Groups and supergroups are communities. Updates come by long polling (default) or a webhook;
``handlers.py`` turns them into engine events and commands. Every send goes through the pacer.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeAllChatAdministrators,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    ChatMember,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    Update,
    User,
)
from telegram.constants import ChatType, ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    RetryAfter,
    TelegramError,
)
from telegram.ext import Application, ApplicationBuilder

from bot.engine.context import Capabilities
from bot.engine.errors import UserError
from bot.engine.events import CommunityRef, UserRef
from bot.engine.models import CHANNEL, Audience, Community, InboxItem, OutboxItem, RewardKind
from bot.engine.text import Text, from_json, t
from bot.inbox import Inbox
from bot.platforms.base import DeliveryError
from bot.platforms.telegram import links, render
from bot.platforms.telegram.errors import delivery_error, retry_seconds
from bot.platforms.telegram.pacing import TELEGRAM_LIMITS, Limits, Pacer
from bot.platforms.telegram.pointers import Pointers
from bot.platforms.telegram.ratelimit import PacedRateLimiter
from bot.platforms.telegram.startup import start_failure
from commands.registry import REGISTRY
from config.i18n import Catalog
from config.settings import TelegramSettings

if TYPE_CHECKING:
    from bot.app import App
    from bot.supervise import StartFailure

log = logging.getLogger(__name__)
PLATFORM = "telegram"
ALLOWED_UPDATES = (
    "message",
    "chat_member",
    "my_chat_member",
    "chat_join_request",
    "callback_query",
)
IN_CHAT = ("creator", "administrator", "member")
_CHAT_ID = re.compile(r"^-?\d{1,20}$")


def is_in_chat(member: ChatMember) -> bool:
    return member.status in IN_CHAT or (
        member.status == "restricted" and bool(getattr(member, "is_member", False))
    )


def lane_of_update(update: Update) -> str:
    """Updates of one chat are handled in order; different chats concurrently."""
    chat = update.effective_chat
    if chat is not None:
        return f"chat:{chat.id}"
    user = update.effective_user
    return f"user:{user.id}" if user is not None else "other"


def user_ref(user: User) -> UserRef:
    return UserRef(str(user.id), user.full_name[:200] or str(user.id))


def community_ref(chat_id: int, title: str | None, chat_type: str | None = None) -> CommunityRef:
    """A group or supergroup is a "group" community; a broadcast channel a "channel" one."""
    kind = CHANNEL if chat_type == ChatType.CHANNEL else "group"
    return CommunityRef(PLATFORM, str(chat_id), title or str(chat_id), kind)


@dataclass(slots=True)
class _Cached:
    member: ChatMember
    until: float


class TelegramPlatform:
    name = PLATFORM
    capabilities = Capabilities(
        roles=False,
        buttons=True,
        dms=True,
        dms_intrusive=False,
        account_age=False,
        channel_access=True,
        tags=True,  # member tags (setChatMemberTag): the counterpart of Discord's roles
    )

    def __init__(
        self,
        settings: TelegramSettings,
        token: str,
        *,
        limits: Limits = TELEGRAM_LIMITS,
        call_limits: Limits | None = None,
        pacer_clock: Callable[[], float] = time.monotonic,
        poll_timeout: float = 30.0,
        defer_after: float = 3.0,
        member_cache_seconds: float = 60.0,
        single_use_link_seconds: int = 86400,
        pointer_interval: float = 30.0,
    ) -> None:
        self.settings = settings
        self.token = token
        self.pacer = Pacer(limits, pacer_clock)  # messages: per chat, per group, overall
        self.call_pacer = Pacer(call_limits or limits, pacer_clock)  # other calls: overall
        self.poll_timeout = poll_timeout
        # An outbox item whose chat is busy for longer than this goes back to the outbox with
        # retry_after instead of holding up items for other chats.
        self.defer_after = defer_after
        self.member_cache_seconds = member_cache_seconds
        self.single_use_link_seconds = single_use_link_seconds
        self.app: App | None = None
        self.application: Application | None = None
        self.me: User | None = None
        self.callbacks = render.CallbackMap()
        self.migrated: dict[int, int] = {}  # basic group -> the supergroup it became
        # "answer sent in private" pointers: at most one message per group and interval
        self.pointers = Pointers(self.say_text, pointer_interval, pacer_clock)
        self.groups: dict[int, str] = {}  # groups seen since start: id -> title
        self.home: dict[int, int] = {}  # user -> the group their private commands are about
        self.delivered: set[str] = set()  # outbox dedupe keys accepted by Telegram (this process)
        self._access_links: dict[str, str] = {}  # channel_access item -> its single-use link
        self._members: dict[tuple[int, int], _Cached] = {}
        self._public: dict[int, bool] = {}
        self._webhook: Any = None
        self.inbox: Inbox | None = None
        self._tasks: list[asyncio.Task] = []
        self.last_update_id = 0  # the newest update handed to the handlers (tests wait on it)

    # -- lifecycle --------------------------------------------------------------------------

    allowed_updates = ALLOWED_UPDATES

    @property
    def bot(self) -> Bot:
        assert self.application is not None, "the Telegram platform is not started"
        return self.application.bot

    async def start(self, app: App) -> None:
        from bot.platforms.telegram.handlers import install

        self.app = app
        if self.settings.mode == "webhook":  # refuse a webhook without a secret before anything
            from bot.platforms.telegram.webhook import WebhookServer, webhook_secret

            webhook_secret(self.settings)
        application = (
            ApplicationBuilder()
            .token(self.token)
            .base_url(self.settings.base_url)
            .updater(None)  # updates come through the inbox (see _poll and webhook.py)
            .rate_limiter(PacedRateLimiter(self.pacer, self.call_pacer))
            .get_updates_read_timeout(self.poll_timeout + 10)
            .build()
        )
        install(application, self)
        await application.initialize()
        self.application = application
        self.me = application.bot.bot
        await self.publish_commands()
        await application.start()
        self.inbox = Inbox(app.db, app.clock, PLATFORM, self._handle_stored,
                           on_processed=self._processed)  # fmt: skip
        self._tasks.append(asyncio.create_task(self.inbox.run(), name="telegram-inbox"))
        if self.settings.mode == "webhook":
            self._webhook = WebhookServer(self, application)
            await self._webhook.start()
        else:
            await self.bot.delete_webhook(drop_pending_updates=False)
            self._tasks.append(asyncio.create_task(self._poll(), name="telegram-poll"))
        log.info("event=telegram.started bot=%s mode=%s", self.me.username, self.settings.mode)

    def start_failure(self, exc: BaseException) -> StartFailure:
        """For the start-up supervisor: a rejected token is final, the rest is retried."""
        return start_failure(exc, self.settings, self.app.catalog if self.app else Catalog())

    def is_connected(self) -> bool:
        return self.application is not None and self.application.running

    async def _poll(self) -> None:
        """Long polling that confirms an update to Telegram (the next offset) only once it is
        stored in the inbox: a crash at any point loses nothing Telegram considers delivered."""
        offset: int | None = None
        failures = 0
        while True:
            try:
                updates = await self.bot.get_updates(
                    offset=offset,
                    timeout=int(self.poll_timeout),
                    allowed_updates=list(ALLOWED_UPDATES),
                )
            except RetryAfter as exc:
                await asyncio.sleep(retry_seconds(exc))
                continue
            except InvalidToken:
                log.error("event=telegram.token_rejected: polling stopped")
                return
            except TelegramError as exc:  # an outage or a timeout: try again, slower each time
                failures += 1
                log.warning("event=telegram.poll_failed error=%s", exc.message)
                await asyncio.sleep(min(30.0, 0.5 * 2 ** min(failures, 6)))
                continue
            failures = 0
            if not updates:
                continue
            try:
                await self.inbox.receive(
                    [(u.update_id, lane_of_update(u), u.to_dict()) for u in updates]
                )
            except Exception:  # the database is away: Telegram keeps them until we're back
                log.exception("event=telegram.inbox_write_failed count=%d", len(updates))
                await asyncio.sleep(5.0)
                continue
            offset = updates[-1].update_id + 1  # confirms them: they are stored

    async def _handle_stored(self, item: InboxItem) -> None:
        assert self.application is not None
        update = Update.de_json(item.payload, self.application.bot)
        await self.application.process_update(update)

    def _processed(self, update_id: int) -> None:
        self.last_update_id = max(self.last_update_id, update_id)

    async def stop(self) -> None:
        application = self.application
        if application is None:
            return
        try:
            if self._webhook is not None:
                await self._webhook.stop()
                self._webhook = None
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
            if self.inbox is not None:
                await self.inbox.stop()  # what is not handled yet stays stored for next start
            await self.pointers.flush()
            if application.running:
                await application.stop()
            await application.shutdown()
        finally:
            self.application = None
            self.app = None

    async def publish_commands(self) -> None:
        """The command menu: member commands everywhere, admin ones for chat administrators."""
        assert self.app is not None
        everyone, admins = [], []
        for c in REGISTRY.all():
            desc = self.app.catalog.render(t(c.description_key), "en")
            entry = BotCommand(render.tg_command(c.name), render.telegram_commands(desc)[:256])
            admins.append(entry)
            if c.audience == Audience.MEMBER:
                everyone.append(entry)
        await self.bot.set_my_commands(everyone, scope=BotCommandScopeAllPrivateChats())
        await self.bot.set_my_commands(everyone, scope=BotCommandScopeAllGroupChats())
        await self.bot.set_my_commands(admins, scope=BotCommandScopeAllChatAdministrators())

    # -- rendering and sending --------------------------------------------------------------

    def render(self, text: Text, locale: str = "en") -> str:
        assert self.app is not None
        return render.to_html(self.app.catalog, text, locale)

    def label(self, text: Text, locale: str = "en") -> str:
        """Button labels are plain text: nothing to escape, mentions are names."""
        assert self.app is not None
        return self.app.catalog.render(text, locale, str, lambda m: m.name)

    async def _send(
        self, chat_id: int, html: str, markup: InlineKeyboardMarkup | None = None, retries: int = 0
    ) -> Message:
        """One message, paced by the rate limiter (see ratelimit.py). A group that became a
        supergroup is followed to its new id (and the community moves with it)."""
        chat_id = self.migrated.get(chat_id, chat_id)
        for _ in range(2):
            try:
                return await self.bot.send_message(
                    chat_id,
                    html,
                    parse_mode=ParseMode.HTML,
                    reply_markup=markup,
                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                    rate_limit_args={"retries": retries},
                )
            except ChatMigrated as exc:
                await self.group_migrated(chat_id, int(exc.new_chat_id))
                chat_id = int(exc.new_chat_id)
        raise DeliveryError(f"chat {chat_id} keeps moving", retryable=False)

    async def group_migrated(self, old: int, new: int) -> bool:
        """A basic group became a supergroup: same program, same links, same counts. True the
        first time (then the admins are told, in the new chat)."""
        self.migrated[old] = new
        for mapping in (self.groups, self._public):
            if old in mapping:
                mapping.setdefault(new, mapping.pop(old))  # type: ignore[attr-defined]
        for user, chat in list(self.home.items()):
            if chat == old:
                self.home[user] = new
        assert self.app is not None
        moved = await self.app.engine.community_moved(PLATFORM, str(old), str(new))
        if moved:
            log.info("event=telegram.group_migrated old=%s new=%s", old, new)
        return moved

    async def say(
        self, chat_id: int, html: str, markup: InlineKeyboardMarkup | None = None
    ) -> Message:
        """An interactive answer: waits for its slot (and once more after a 429). A text over
        Telegram's 4096 characters goes as several messages; buttons go with the last."""
        parts = render.split_message(html)
        sent: Message | None = None
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            sent = await self._send(chat_id, part, markup if last else None, retries=2)
        assert sent is not None
        return sent

    async def say_text(self, chat_id: int, text: Text, locale: str = "en") -> Message | None:
        """An interactive answer, logged (not raised) when Telegram refuses it."""
        try:
            return await self.say(chat_id, self.render(text, locale))
        except TelegramError as exc:
            log.warning("event=telegram.reply_failed chat=%s error=%s", chat_id, exc.message)
            return None

    async def _paced(
        self,
        chat_id: int,
        html: str,
        markup: InlineKeyboardMarkup | None,
        what: str,
        key: str = "",
    ) -> None:
        """An outbox send: a busy chat defers only this item (retry_after), never the others.
        A long text goes as several messages; a retry sends only the parts not sent yet."""
        group = chat_id < 0
        parts = render.split_message(html)
        for i, part in enumerate(parts):
            part_key = f"{key}#{i}"
            if key and part_key in self.delivered:
                continue
            wait = self.pacer.wait(chat_id, group)
            if wait > self.defer_after:
                raise DeliveryError(
                    f"{what}: chat busy for {wait:.2f}s", retry_after=wait, counts_as_attempt=False
                )
            try:  # a 429 has already blocked the chat in the pacer (ratelimit.py)
                await self._send(chat_id, part, markup if i == len(parts) - 1 else None)
            except TelegramError as exc:
                raise delivery_error(exc, what) from None
            if key and len(parts) > 1:
                self.delivered.add(part_key)

    # -- the Platform protocol ---------------------------------------------------------------

    def target_chat(self, community: str, channel: str | None) -> int:
        """Groups have no channels: a chat id names another chat, `moderators` the moderators'
        chat (telegram.moderators_chat_id); any other name means the group itself."""
        if channel and _CHAT_ID.match(channel):
            chat = int(channel)
        elif channel == "moderators" and self.settings.moderators_chat_id:
            chat = int(self.settings.moderators_chat_id)
        else:
            chat = int(community)
        return self.migrated.get(chat, chat)

    def lane(self, item: OutboxItem) -> str:
        """The outbox delivers one chat's items in order and different chats in parallel:
        each chat's own limit (1/s, 20/min in groups) is the real ceiling, not the bot's."""
        p = item.payload
        if item.kind == "message":
            return str(self.target_chat(p["community"], p.get("channel")))
        return f"user:{p.get('user', '')}"

    async def deliver(self, item: OutboxItem) -> None:
        if item.dedupe_key in self.delivered:
            return  # accepted before (a redelivery after a lease ran out)
        p = item.payload
        what = f"{item.kind} {item.dedupe_key}"
        if item.kind == "message":
            chat = self.target_chat(p["community"], p.get("channel"))
            await self._refuse_public_staff_post(p, chat, what)
            buttons = [
                (self.label(from_json(b["label"]), p["locale"]), b["command"])
                for b in p.get("buttons", [])
            ]
            html = self.render(from_json(p["text"]), p["locale"])
            markup = render.keyboard(buttons, self.callbacks)
            await self._paced(chat, html, markup, what, item.dedupe_key)
        elif item.kind == "dm":
            html = self.render(from_json(p["text"]), p["locale"])
            await self._paced(int(p["user"]), html, None, what, item.dedupe_key)
        elif item.kind == "channel_access":
            link = await self._access_link(item.dedupe_key, p["channel"], what)
            text = t("redeem.channel_link", channel=p["channel"], link=link)
            await self._paced(int(p["user"]), self.render(text, p["locale"]), None, what)
        elif item.kind in ("grant_role", "revoke_role"):
            await self._member_tag(p, give=item.kind == "grant_role", what=what)
        else:
            raise DeliveryError(f"unknown outbox kind {item.kind!r}", retryable=False)
        self.delivered.add(item.dedupe_key)

    async def _member_tag(self, p: dict, *, give: bool, what: str) -> None:
        """A tag reward (Telegram has no roles: the applied reward is a member tag), given or
        taken back in one group. Without can_manage_tags it is refused (shown in /check)."""
        chat = self.migrated.get(int(p["community"]), int(p["community"]))
        try:
            tag = p["role"] if give else None  # no tag: the member's tag is removed
            await self.bot.set_chat_member_tag(chat, int(p["user"]), tag=tag)
        except TelegramError as exc:
            raise delivery_error(exc, what) from None

    async def _refuse_public_staff_post(self, p: dict, chat: int, what: str) -> None:
        """A moderators' or admins' message whose channel means the group itself would be
        read by every member: it is not sent (flags still wait in /fraud-queue)."""
        channel = p.get("channel")
        if not channel or chat != self.migrated.get(int(p["community"]), int(p["community"])):
            return
        assert self.app is not None
        settings, _tiers = await self.app.engine.rules(self.ref(chat))
        staff = {settings.moderator_channel, settings.admin_channel} - {None}
        if channel in staff and channel != settings.announce_channel:
            log.warning("event=telegram.staff_post_refused chat=%s channel=%s", chat, channel)
            raise DeliveryError(f"{what}: the {channel!r} channel is the group itself; set a "
                                "private chat with /set moderators-chat", retryable=False)

    async def _access_link(self, key: str, channel: str, what: str) -> str:
        """A single-use invite to the reward's chat (-100123 or @name), made once per item."""
        if key in self._access_links:
            return self._access_links[key]
        chat: int | str = int(channel) if _CHAT_ID.match(channel) else channel
        if isinstance(chat, str) and not chat.startswith("@"):
            chat = "@" + chat
        try:
            invite = await self.bot.create_chat_invite_link(
                chat, member_limit=1, name=links.link_name(f"reward {key}")
            )
        except TelegramError as exc:
            raise delivery_error(exc, what) from None
        self._access_links[key] = invite.invite_link
        return invite.invite_link

    async def create_referral_link(self, community: Community, code: str) -> str:
        """Private groups: a permanent invite link named by the code (the join carries it).
        Public groups: a deep link; the bot then hands out a single-use link (see links.py)."""
        chat = int(community.external_id)
        if await self.is_public(chat):
            return links.deep_link(self.username, links.referral_payload(code, chat))
        try:
            invite = await self.bot.create_chat_invite_link(chat, name=links.link_name(code))
        except (BadRequest, Forbidden) as exc:
            log.warning("event=telegram.link_failed chat=%s error=%s", chat, exc.message)
            raise UserError("telegram.link.no_rights") from None
        return invite.invite_link

    async def revoke_referral_link(self, community_id: str, url: str) -> None:
        """`/invite new`: the old chat invite link stops working (a deep link has nothing to
        revoke: its code is refused by the engine). A link that is already gone is done."""
        if not url.startswith("https://t.me/+"):
            return
        try:
            await self.bot.revoke_chat_invite_link(int(community_id), url)
        except BadRequest as exc:
            log.info(
                "event=telegram.link_revoke_skipped chat=%s error=%s", community_id, exc.message
            )
        except TelegramError as exc:
            raise delivery_error(exc, "revoke link") from exc

    async def single_use_link(self, chat_id: int, code: str | None) -> str:
        now = int(time.time())
        invite = await self.bot.create_chat_invite_link(
            chat_id,
            member_limit=1,
            expire_date=now + self.single_use_link_seconds,
            name=links.link_name(code) if code else None,
        )
        return invite.invite_link

    # -- facts about chats and members ------------------------------------------------------

    @property
    def username(self) -> str:
        assert self.me is not None and self.me.username is not None
        return self.me.username

    async def is_public(self, chat_id: int, fresh: bool = False) -> bool:
        if fresh or chat_id not in self._public:
            chat = await self.bot.get_chat(chat_id)
            self._public[chat_id] = chat.username is not None
            self.groups.setdefault(chat_id, chat.title or str(chat_id))
        return self._public[chat_id]

    async def member(self, chat_id: int, user_id: int, fresh: bool = False) -> ChatMember | None:
        """getChatMember, cached briefly (admin checks on every command)."""
        key = (chat_id, user_id)
        cached = self._members.get(key)
        now = time.monotonic()
        if cached is not None and cached.until > now and not fresh:
            return cached.member
        try:
            found = await self.bot.get_chat_member(chat_id, user_id)
        except (BadRequest, Forbidden):
            return None
        self._members[key] = _Cached(found, now + self.member_cache_seconds)
        return found

    def forget_member(self, chat_id: int, user_id: int) -> None:
        self._members.pop((chat_id, user_id), None)

    async def is_admin(self, chat_id: int, user_id: int) -> bool:
        found = await self.member(chat_id, user_id)
        return found is not None and found.status in ("creator", "administrator")

    async def is_moderator(self, chat_id: int, user_id: int) -> bool:
        """Admins of the group, and members of telegram.moderators_chat_id when it is set."""
        if await self.is_admin(chat_id, user_id):
            return True
        mods = self.settings.moderators_chat_id
        if not mods:
            return False
        found = await self.member(int(mods), user_id)
        return found is not None and is_in_chat(found)

    def problems(self, me: ChatMember | None) -> list[Text]:
        """What the bot lacks in a group, as sentences telling the admins what to grant."""
        if me is None or not is_in_chat(me):
            return [t("telegram.check.not_in_group")]
        if me.status != "administrator":
            lines = [t("telegram.check.not_admin")]
            if self.me is not None and not self.me.can_read_all_group_messages:
                lines.append(t("telegram.check.privacy"))
            return lines
        if not getattr(me, "can_invite_users", False):
            return [t("telegram.check.no_invite_right")]
        return []

    async def diagnose(self, chat_id: int) -> list[Text]:
        assert self.me is not None
        me = await self.member(chat_id, self.me.id, fresh=True)
        problems = self.problems(me)
        if not problems and not getattr(me, "can_manage_tags", False) and await self._tag_rewards(
            chat_id
        ):
            problems.append(t("telegram.check.no_tag_right"))
        mods = self.settings.moderators_chat_id
        if mods:
            there = await self.member(int(mods), self.me.id, fresh=True)
            if there is None or not is_in_chat(there):
                problems.append(t("telegram.check.moderators_chat", chat=mods))
        return problems

    async def _tag_rewards(self, chat_id: int) -> bool:
        """Whether the group's program gives member tags (a tier or the welcome reward)."""
        assert self.app is not None
        settings, tiers = await self.app.engine.rules(self.ref(chat_id))
        return settings.referee_reward_kind == RewardKind.TAG.value or any(
            tier.reward_kind == RewardKind.TAG for tier in tiers
        )

    def remember_home(self, user_id: int, chat_id: int) -> None:
        """The group this member's private commands are about from now on."""
        self.home[user_id] = chat_id

    async def home_group(self, user_id: int) -> int | None:
        """The group a private command is about: the last one the user came from in this
        process, else the groups stored as theirs (latest join first), else a group the bot
        saw them in. Every candidate is confirmed with Telegram (getChatMember)."""
        candidates = [self.home[user_id]] if user_id in self.home else []
        assert self.app is not None
        stored = await self.app.engine.communities_of_member(PLATFORM, str(user_id))
        for chat_id in [*(int(c) for c in stored if _CHAT_ID.match(c)), *self.groups]:
            if chat_id not in candidates:
                candidates.append(chat_id)
        for chat_id in candidates:
            found = await self.member(chat_id, user_id)
            if found is not None and is_in_chat(found):
                self.home[user_id] = chat_id
                return chat_id
        return None

    def title(self, chat_id: int) -> str:
        return self.groups.get(chat_id, str(chat_id))

    def ref(self, chat_id: int) -> CommunityRef:
        return community_ref(chat_id, self.groups.get(chat_id))

    def member_commands(self) -> Sequence[str]:
        return [c.name for c in REGISTRY.all() if c.audience == Audience.MEMBER]
