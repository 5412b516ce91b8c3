"""Updates in, engine events and commands out. No business rule lives here.

- ``my_chat_member``: the bot added to a group (registered; told what rights it lacks) or removed.
- ``chat_member``: joins (attributed by the bot's own invite link name) and leaves.
- ``chat_join_request``: attributed by its invite link and approved (see ``hold_join_request``).
- ``message``: counted (never stored); commands are dispatched through the registry.
- ``callback_query``: a moderator button; runs its command line as the presser (admins only).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from telegram import (
    CallbackQuery,
    Chat,
    ChatMemberUpdated,
    Message,
    MessageEntity,
    Update,
    User,
)
from telegram.constants import ChatType
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ChatJoinRequestHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.engine.admin import Actor
from bot.engine.events import JoinSource, MemberJoined, MemberLeft, MessagePosted, UserRef
from bot.engine.models import Audience
from bot.engine.text import Date, Mention, Text, t
from bot.platforms.telegram import links, render
from bot.platforms.telegram.adapter import TelegramPlatform, community_ref, is_in_chat, user_ref
from commands import dispatch
from commands.guard import guard_of
from commands.registry import REGISTRY, CommandContext, Reply

if TYPE_CHECKING:
    from telegram import ChatInviteLink

log = logging.getLogger(__name__)
GROUPS = (ChatType.GROUP, ChatType.SUPERGROUP)
# Chats that are communities: groups, and broadcast channels (subscribers join through
# personal links like a group's members; nobody posts, so commands come from elsewhere).
COMMUNITIES = (*GROUPS, ChatType.CHANNEL)
# `/set moderators-chat` (typed inside that chat) sets moderator-channel to it; same for admins
PRIVATE_CHATS = {"moderators-chat": "moderator-channel", "admins-chat": "admin-channel"}
JOIN_REQUEST = "jr:"  # callback data of the held join request buttons: jr:<a|d>:<chat>:<user>
Context = ContextTypes.DEFAULT_TYPE


def install(application: Application, tg: TelegramPlatform) -> None:
    h = Handlers(tg)
    application.add_handler(TypeHandler(Update, h.seen), group=-1)
    names = [render.tg_command(c.name) for c in REGISTRY.all()]
    application.add_handler(CommandHandler("start", h.on_start, filters.ChatType.PRIVATE))
    application.add_handler(CommandHandler(names, h.on_command))
    application.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, h.on_migrate))
    application.add_handler(
        MessageHandler(filters.ChatType.GROUPS & ~filters.StatusUpdate.ALL, h.on_message)
    )
    application.add_handler(ChatMemberHandler(h.on_my_member, ChatMemberHandler.MY_CHAT_MEMBER))
    application.add_handler(ChatMemberHandler(h.on_member, ChatMemberHandler.CHAT_MEMBER))
    application.add_handler(ChatJoinRequestHandler(h.on_join_request))
    application.add_handler(CallbackQueryHandler(h.on_button))
    application.add_error_handler(h.on_error)


class Handlers:
    def __init__(self, tg: TelegramPlatform) -> None:
        self.tg = tg
        self._requested: dict[tuple[int, int], str] = {}  # approved join request -> its code
        self._held: dict[tuple[int, int], str | None] = {}  # join requests waiting for review

    @property
    def engine(self):  # noqa: ANN201 - the engine type lives behind the app
        assert self.tg.app is not None
        return self.tg.app.engine

    async def seen(self, update: Update, _context: Context) -> None:
        chat = update.effective_chat
        if chat is not None and chat.type in COMMUNITIES:
            self.tg.groups[chat.id] = chat.title or str(chat.id)

    async def on_error(self, update: object, context: Context) -> None:
        log.error("event=telegram.handler_failed update=%s", update, exc_info=context.error)
        if isinstance(update, Update) and update.message is not None:
            text = update.message.text or ""
            if text.startswith("/") and update.effective_user is not None:
                await self.tg.say_text(update.effective_user.id, t("telegram.failed"))

    # -- the bot itself in a group ----------------------------------------------------------

    async def on_my_member(self, update: Update, _context: Context) -> None:
        change = update.my_chat_member
        if change is None or change.chat.type not in COMMUNITIES:
            return
        chat = change.chat
        if not is_in_chat(change.new_chat_member):
            self.tg.groups.pop(chat.id, None)
            log.info("event=telegram.removed chat=%s", chat.id)
            return
        assert self.tg.me is not None
        self.tg.forget_member(chat.id, self.tg.me.id)
        await self.engine.community(community_ref(chat.id, chat.title, chat.type))
        before = self.tg.problems(change.old_chat_member)
        now = self.tg.problems(change.new_chat_member)
        added = not is_in_chat(change.old_chat_member)
        if not added and before == now:
            return
        if chat.type == ChatType.CHANNEL:
            await self._channel_setup(change, added, now)
            return
        if now:
            text = t("telegram.setup.needs", community=chat.title or "", lines=now)
        else:
            text = t("telegram.setup.ready", community=chat.title or "", bot=self.tg.username)
        await self.tg.say_text(chat.id, text)

    async def _channel_setup(
        self, change: ChatMemberUpdated, added: bool, problems: list[Text]
    ) -> None:
        """A post in a channel reaches every subscriber: the admin who changed the bot's
        rights is told in private instead, and on registration once how a channel's
        referrals convert (time stayed alone: subscribers can't post)."""
        admin, title = change.from_user, change.chat.title or ""
        if admin is None or admin.is_bot:
            return
        if problems:
            await self.tg.say_text(
                admin.id, t("telegram.setup.needs", community=title, lines=problems)
            )
        if added:
            settings, _tiers = await self.engine.rules(self.tg.ref(change.chat.id))
            days = t("days", count=settings.min_days)
            await self.tg.say_text(
                admin.id, t("telegram.channel.ready", community=title, days=days)
            )

    async def on_migrate(self, update: Update, _context: Context) -> None:
        """A basic group became a supergroup (both chats say so; the first one moves it)."""
        message = update.message
        if message is None:
            return
        if message.migrate_to_chat_id:
            old, new = message.chat.id, int(message.migrate_to_chat_id)
        elif message.migrate_from_chat_id:
            old, new = int(message.migrate_from_chat_id), message.chat.id
        else:
            return
        if await self.tg.group_migrated(old, new):
            title = message.chat.title or str(new)
            await self.tg.say_text(new, t("telegram.migrated", community=title))

    # -- members joining and leaving --------------------------------------------------------

    def _source(self, change: ChatMemberUpdated) -> tuple[JoinSource, str | None]:
        code = self._own_link_code(change.invite_link)
        if code is not None:
            return JoinSource.INVITE_LINK, code
        remembered = self._requested.pop((change.chat.id, change.new_chat_member.user.id), None)
        if remembered is not None:
            return JoinSource.INVITE_LINK, remembered
        return JoinSource.ORGANIC, None

    def _own_link_code(self, link: ChatInviteLink | None) -> str | None:
        """Only links this bot made carry a code: another admin's link name is just a name."""
        if link is None or not link.name or self.tg.me is None:
            return None
        return link.name if link.creator.id == self.tg.me.id else None

    async def on_member(self, update: Update, _context: Context) -> None:
        change = update.chat_member
        if change is None or change.chat.type not in COMMUNITIES:
            return
        user = change.new_chat_member.user
        if user.is_bot:
            return
        chat = change.chat
        self.tg.forget_member(chat.id, user.id)
        was, now = is_in_chat(change.old_chat_member), is_in_chat(change.new_chat_member)
        ref = community_ref(chat.id, chat.title, chat.type)
        if now and not was:
            source, code = self._source(change)
            self.tg.home.setdefault(user.id, chat.id)
            await self.engine.member_joined(MemberJoined(ref, user_ref(user), source, code))
        elif was and not now:
            await self.engine.member_left(MemberLeft(ref, str(user.id)))

    async def hold_join_request(self, chat: Chat, user: UserRef, code: str | None) -> bool:
        """In the program's ``hold`` risk mode a join request waits for a moderator.

        Telegram keeps the request pending; the moderators' chat (telegram.moderators_chat_id,
        else the group) gets Approve / Decline buttons that only the group's admins can use.
        """
        settings, _tiers = await self.engine.rules(community_ref(chat.id, chat.title))
        if settings.risk_mode != "hold":
            return False
        self._held[(chat.id, int(user.user_id))] = code
        where = int(self.tg.settings.moderators_chat_id or chat.id)
        ref = community_ref(chat.id, chat.title)
        owner = await self.engine.code_owner(ref, code) if code else None
        if owner is not None:
            via = t("telegram.join_request.via_member", referrer=owner)
        elif code:
            via = t("telegram.join_request.via_link")
        else:
            via = t("telegram.join_request.no_link")
        text = t(
            "telegram.join_request.held",
            member=Mention(user.user_id, user.display_name),
            community=chat.title or str(chat.id),
            via=via,
        )
        buttons = (  # the question asks "approve or decline?": the buttons say so
            (t("telegram.join_request.approve"), f"{JOIN_REQUEST}a:{chat.id}:{user.user_id}"),
            (t("telegram.join_request.decline"), f"{JOIN_REQUEST}d:{chat.id}:{user.user_id}"),
        )
        markup = render.keyboard(
            [(self.tg.label(label), data) for label, data in buttons], self.tg.callbacks
        )
        try:
            await self.tg.say(where, self.tg.render(text), markup)
        except TelegramError as exc:  # nobody could review it: let the member in, as before
            log.warning("event=telegram.hold_failed chat=%s error=%s", where, exc.message)
            self._held.pop((chat.id, int(user.user_id)), None)
            return False
        return True

    async def _decide_join_request(self, query: CallbackQuery, data: str) -> None:
        """A moderator pressed Approve or Decline on a held join request."""
        verdict, chat_text, user_text = data[len(JOIN_REQUEST) :].split(":")
        chat_id, user_id, presser = int(chat_text), int(user_text), query.from_user
        if not await self.tg.is_admin(chat_id, presser.id):
            await query.answer(self._plain(t("telegram.button.admins_only")), show_alert=True)
            return
        approve = verdict == "a"
        try:
            if approve:
                await self.tg.bot.approve_chat_join_request(chat_id, user_id)
            else:
                await self.tg.bot.decline_chat_join_request(chat_id, user_id)
        except TelegramError as exc:
            await query.answer(self._plain(t("telegram.join_request.gone")), show_alert=True)
            log.info("event=telegram.join_request_gone chat=%s error=%s", chat_id, exc.message)
            return
        code = self._held.pop((chat_id, user_id), None)
        if approve and code is not None:
            self._requested[(chat_id, user_id)] = code
        await query.answer(
            self._plain(
                t("telegram.join_request.approved" if approve else "telegram.join_request.declined")
            )
        )
        await self._show_decision(query, approve, presser)
        await self.engine.record_action(
            community_ref(chat_id, None),
            Actor(str(presser.id), presser.full_name),
            "join_request.approved" if approve else "join_request.declined",
            {"user": str(user_id)},
        )

    async def _show_decision(self, query: CallbackQuery, approve: bool, presser: User) -> None:
        """The post's buttons are replaced by who decided, and when."""
        message = query.message
        if not isinstance(message, Message):
            return
        assert self.tg.app is not None
        decided = t(
            "telegram.join_request.decided_approved"
            if approve
            else "telegram.join_request.decided_declined",
            moderator=Mention(str(presser.id), presser.full_name),
            when=Date(self.tg.app.clock.now()),
        )
        html = message.text_html + "\n" + self.tg.render(decided)
        try:
            await self.tg.bot.edit_message_text(
                html, chat_id=message.chat.id, message_id=message.message_id,
                parse_mode="HTML", reply_markup=None,
            )  # fmt: skip
        except TelegramError as exc:  # the post is gone or too old to edit: the audit has it
            log.info("event=telegram.join_request_edit_failed error=%s", exc.message)

    async def on_join_request(self, update: Update, _context: Context) -> None:
        request = update.chat_join_request
        if request is None:
            return
        chat, user = request.chat, request.from_user
        code = self._own_link_code(request.invite_link)
        if await self.hold_join_request(chat, user_ref(user), code):
            return
        try:
            await request.approve()
        except TelegramError as exc:
            log.warning("event=telegram.approve_failed chat=%s error=%s", chat.id, exc.message)
            return
        if code is not None:  # the chat_member update that follows may not repeat the link
            self._requested[(chat.id, user.id)] = code

    # -- messages and commands --------------------------------------------------------------

    async def on_message(self, update: Update, _context: Context) -> None:
        message, user = update.message, update.effective_user
        if message is None or user is None or user.is_bot or message.sender_chat is not None:
            return
        self.tg.home[user.id] = message.chat.id
        ref = community_ref(message.chat.id, message.chat.title)
        self.engine.message_posted(MessagePosted(ref, user_ref(user)))

    @staticmethod
    def _parse(message: Message) -> tuple[str, list[str]]:
        entity = next(
            e for e in message.entities if e.type == MessageEntity.BOT_COMMAND and e.offset == 0
        )
        text = message.text or ""
        command = text[1 : entity.length].split("@", 1)[0]
        return render.neutral_command(command), text[entity.length :].split()

    async def _context(self, chat_id: int, user: User) -> CommandContext:
        return CommandContext(
            engine=self.engine,
            community=self.tg.ref(chat_id),
            user=user_ref(user),
            is_admin=await self.tg.is_admin(chat_id, user.id),
            is_moderator=await self.tg.is_moderator(chat_id, user.id),
            make_link=self.tg.create_referral_link,
            capabilities=self.tg.capabilities,
            diagnose=lambda: self.tg.diagnose(chat_id),
            usage_of=render.telegram_usage,
        )

    async def on_command(self, update: Update, _context: Context) -> None:
        message, user = update.message, update.effective_user
        if message is None or user is None:
            return
        chat = message.chat
        if chat.type in GROUPS and message.sender_chat is not None:
            # An anonymous admin (sent as GroupAnonymousBot, a bot account) or a channel:
            # nobody to authorize. Checked before the bot filter, or they'd get no answer.
            await self.tg.say_text(chat.id, t("telegram.anonymous_admin"))
            return
        if user.is_bot:
            return
        name, tokens = self._parse(message)
        private_setting = chat.type in GROUPS and name == "set" and bool(tokens)
        if private_setting and await self._private_chat_setting(chat, user, tokens):
            return
        if chat.type in GROUPS:
            self.tg.home[user.id] = chat.id
            replies = await dispatch(await self._context(chat.id, user), name, tokens)
            await self.answer_in_group(chat.id, user, replies, name, not tokens)
        elif chat.type == ChatType.PRIVATE:
            await self.private_command(user, name, tokens)

    # -- where moderators' and admins' messages go ---------------------------------------------

    async def _private_chat_setting(self, chat: Chat, user: User, tokens: list[str]) -> bool:
        """Telegram groups have no private channels: the moderator and admin channels must be
        another chat. True if this /set was handled here (and not by the neutral command)."""
        key = tokens[0].lower().replace("_", "-")
        if key in PRIVATE_CHATS and len(tokens) == 1:
            await self._set_private_chat(chat, user, PRIVATE_CHATS[key])
            return True
        if key not in PRIVATE_CHATS.values() or len(tokens) < 2:
            return False
        value = tokens[1].lstrip("#")
        if value.lower() in ("off", "none") or self.tg.target_chat(str(chat.id), value) != chat.id:
            return False
        if not await self.tg.is_admin(chat.id, user.id):
            return False  # the neutral command refuses it as usual
        chat_key = next(k for k, v in PRIVATE_CHATS.items() if v == key)
        await self.tg.say_text(
            chat.id, t("telegram.private_chat.needed", setting=key, command=f"/set {chat_key}")
        )
        return True

    async def _set_private_chat(self, here: Chat, user: User, setting: str) -> None:
        """``/set moderators-chat`` typed inside that chat: the typer's group (where they are
        an admin) sends its moderators' (or admins') messages here from now on."""
        assert self.tg.app is not None
        stored = await self.engine.communities_of_member("telegram", str(user.id))
        candidates = [self.tg.home[user.id]] if user.id in self.tg.home else []
        candidates += [int(c) for c in stored if c.lstrip("-").isdigit()]
        main = None
        for chat_id in dict.fromkeys(candidates):
            if chat_id != here.id and await self.tg.is_admin(chat_id, user.id):
                main = chat_id
                break
        if main is None:
            await self.tg.say_text(here.id, t("telegram.private_chat.no_group"))
            return
        actor = Actor(str(user.id), user.full_name)
        await self.engine.set_setting(self.tg.ref(main), actor, setting, str(here.id))
        title = self.tg.title(main)
        await self.tg.say_text(
            here.id, t("telegram.private_chat.set", community=title, setting=setting)
        )

    async def private_command(self, user: User, name: str, tokens: list[str]) -> None:
        group = await self.tg.home_group(user.id)
        if group is None:
            await self.tg.say_text(user.id, t("telegram.private.no_group"))
            return
        for reply in await dispatch(await self._context(group, user), name, tokens):
            await self._reply_private(user.id, reply)

    async def _reply_private(self, user_id: int, reply: Reply) -> None:
        markup = render.keyboard(
            [(self.tg.label(label), command) for label, command in reply.buttons],
            self.tg.callbacks,
        )
        await self.tg.say(user_id, self.tg.render(reply.text), markup)

    async def answer_in_group(
        self, chat_id: int, user: User, replies: list[Reply], name: str, plain: bool
    ) -> None:
        """Public replies go to the group; personal ones privately, with a short pointer."""
        personal = [r for r in replies if r.private]
        for reply in replies:
            if not reply.private:
                markup = render.keyboard(
                    [(self.tg.label(label), cmd) for label, cmd in reply.buttons],
                    self.tg.callbacks,
                )
                await self.tg.say(chat_id, self.tg.render(reply.text), markup)
        if not personal:
            return
        who = Mention(str(user.id), user.full_name)
        try:
            for reply in personal:
                await self._reply_private(user.id, reply)
        except TelegramError as exc:  # 403: the member never started the bot
            log.info("event=telegram.dm_refused user=%s error=%s", user.id, exc.message)
            rerun = render.tg_command(name) if plain and name in self.tg.member_commands() else None
            payload = links.open_payload(chat_id, rerun)
            link = links.deep_link(self.tg.username, payload)
            await self.tg.say_text(chat_id, t("telegram.pointer.open_bot", member=who, link=link))
            return
        await self.tg.pointers.sent(chat_id, who)

    # -- /start in the private chat: deep links -----------------------------------------------

    async def on_start(self, update: Update, context: Context) -> None:
        user = update.effective_user
        if user is None or user.is_bot:
            return
        payload = links.parse_start(context.args[0]) if context.args else None
        if payload is None:
            await self.tg.say_text(user.id, t("telegram.start.hello", bot=self.tg.username))
            return
        title = await self._title(payload.chat_id)
        if title is None:
            await self.tg.say_text(user.id, t("telegram.start.unknown_group"))
            return
        if payload.code is None:
            found = await self.tg.member(payload.chat_id, user.id, fresh=True)
            if found is None or not is_in_chat(found):  # nothing about a group they're not in
                await self.tg.say_text(user.id, t("telegram.start.not_member"))
                return
            self.tg.remember_home(user.id, payload.chat_id)
            command = render.neutral_command(payload.command or "")
            if command in self.tg.member_commands():
                await self.private_command(user, command, [])
            else:
                await self.tg.say_text(user.id, t("telegram.start.opened", community=title))
            return
        if not await self._deep_link_allowed(payload.chat_id, payload.code):
            log.info("event=telegram.deep_link_refused chat=%s", payload.chat_id)
            await self.tg.say_text(user.id, t("telegram.start.link_refused"))
            return
        await self._hand_out_link(user, payload.chat_id, payload.code, title)

    async def _deep_link_allowed(self, chat_id: int, code: str) -> bool:
        """Deep links hand out invites to public groups only, and only for a code that is
        active in that group's program: a private group is entered through a member's
        personal invite link, never through a payload anyone can type."""
        try:
            if not await self.tg.is_public(chat_id, fresh=True):
                return False
        except TelegramError:
            return False
        return await self.engine.code_credits_in(community_ref(chat_id, None), code)

    async def _title(self, chat_id: int) -> str | None:
        if chat_id in self.tg.groups:
            return self.tg.groups[chat_id]
        try:
            await self.tg.is_public(chat_id)
        except TelegramError:
            return None
        return self.tg.groups.get(chat_id)

    async def _hand_out_link(self, user: User, chat_id: int, code: str, title: str) -> None:
        """Deep link step two: a single-use invite named by the code, so the join carries it."""
        found = await self.tg.member(chat_id, user.id, fresh=True)
        if found is not None and is_in_chat(found):
            await self.tg.say_text(user.id, t("telegram.start.already_member", community=title))
            return
        try:
            link = await self.tg.single_use_link(chat_id, code)
        except TelegramError as exc:
            log.warning("event=telegram.link_failed chat=%s error=%s", chat_id, exc.message)
            await self.tg.say_text(user.id, t("telegram.start.link_failed", community=title))
            return
        await self.tg.say_text(user.id, t("telegram.start.join_link", community=title, link=link))

    # -- buttons ----------------------------------------------------------------------------

    async def on_button(self, update: Update, _context: Context) -> None:
        query = update.callback_query
        if query is None or query.message is None:
            return
        user, chat = query.from_user, query.message.chat
        if (query.data or "").startswith(JOIN_REQUEST):
            await self._decide_join_request(query, query.data or "")
            return
        line = self.tg.callbacks.command_for(query.data or "")
        if line is None or not line.split():
            await query.answer(self._plain(t("telegram.button.expired")), show_alert=True)
            return
        group = chat.id if chat.type in GROUPS else await self.tg.home_group(user.id)
        if group is None or not await self.tg.is_admin(group, user.id):
            pressed = REGISTRY.get(line.split()[0])
            if group is not None and pressed is not None and pressed.audience != Audience.MEMBER:
                guard_of(self.engine).forbidden(
                    self.tg.name, str(group), str(user.id), pressed.name
                )
            await query.answer(self._plain(t("telegram.button.admins_only")), show_alert=True)
            return
        await query.answer()
        name, *tokens = line.split()
        replies = await dispatch(await self._context(group, user), name, tokens)
        if chat.type in GROUPS:
            await self.answer_in_group(chat.id, user, replies, name, False)
        else:
            for reply in replies:
                await self._reply_private(user.id, reply)

    def _plain(self, text: Text) -> str:
        return self.tg.label(text)[:200]
