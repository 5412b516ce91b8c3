"""A fake Telegram Bot API server (aiohttp on 127.0.0.1) for running the real python-telegram-bot.

It keeps state like Telegram does: chats, members and their rights, invite links and who used
them, messages sent per chat with timestamps, the update queue with offsets and allowed_updates,
commands per scope, webhook. Updates are injected with the helpers (``add_group``, ``join``,
``say``, ``press``...). Sends are checked against Telegram's limits (1 msg/s per chat, 20 per
minute per group, 30 per second overall): too many answer HTTP 429 with retry_after, as Telegram.
HTML messages are parsed like Telegram does: an unknown tag is a 400 "can't parse entities".
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import secrets
import time
import unicodedata
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from aiohttp import ClientSession, web

ADMIN_RIGHTS = (
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_promote_members",
    "can_change_info",
    "can_invite_users",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
    "can_pin_messages",
    "can_manage_tags",
)
ALLOWED_TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "a",
    "code",
    "pre",
    "tg-spoiler",
    "blockquote",
    "span",
    "tg-emoji",
}
DEFAULT_UPDATES = {
    "message",
    "edited_message",
    "channel_post",
    "callback_query",
    "my_chat_member",
    "chat_join_request",
}


def _chat_of(params: dict[str, Any]) -> int | None:
    try:
        return int(params["chat_id"])
    except (KeyError, TypeError, ValueError):
        return None


class ApiError(Exception):
    def __init__(
        self,
        code: int,
        description: str,
        retry_after: int | None = None,
        migrate_to: int | None = None,
    ) -> None:
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after
        self.migrate_to = migrate_to


@dataclass(frozen=True)
class FakeLimits:
    per_chat_interval: float = 1.0
    group_max: int = 20
    group_window: float = 60.0
    global_max: int = 30
    global_window: float = 1.0
    calls_max: int = 30  # every other method (getUpdates excepted), per calls_window
    calls_window: float = 1.0

    def scaled(self, factor: float) -> FakeLimits:
        return FakeLimits(
            self.per_chat_interval / factor,
            self.group_max,
            self.group_window / factor,
            self.global_max,
            self.global_window / factor,
            self.calls_max,
            self.calls_window / factor,
        )


UNLIMITED = {"getUpdates", "getMe", "setWebhook", "deleteWebhook", "sendMessage"}


@dataclass
class Chat:
    id: int
    type: str  # private | group | supergroup | channel
    title: str | None = None
    username: str | None = None
    members: dict[int, dict[str, Any]] = field(default_factory=dict)  # user id -> ChatMember

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.title is not None:
            out["title"] = self.title
        if self.username is not None:
            out["username"] = self.username
        return out


@dataclass
class Link:
    url: str
    chat_id: int
    creator: dict[str, Any]
    name: str | None = None
    member_limit: int | None = None
    expire_date: int | None = None
    creates_join_request: bool = False
    revoked: bool = False
    used_by: list[int] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "invite_link": self.url,
            "creator": self.creator,
            "creates_join_request": self.creates_join_request,
            "is_primary": False,
            "is_revoked": self.revoked,
        }
        for key in ("name", "member_limit", "expire_date"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass
class Sent:
    chat_id: int
    message_id: int
    html: str  # what the bot sent, as sent
    text: str  # what members see (entities parsed out)
    entities: list[dict[str, Any]]
    reply_markup: dict[str, Any] | None
    at: float


class _Html(HTMLParser):
    """Telegram's HTML subset: known tags become entities; anything else is an error."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.entities: list[dict[str, Any]] = []
        self.open: list[tuple[str, int, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS:
            raise ApiError(
                400, f'Bad Request: can\'t parse entities: Unsupported start tag "{tag}"'
            )
        self.open.append((tag, len("".join(self.text)), dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1][0] != tag:
            raise ApiError(400, f'Bad Request: can\'t parse entities: Unmatched end tag "{tag}"')
        name, start, attrs = self.open.pop()
        entity = {
            "type": "bold" if name in ("b", "strong") else name,
            "offset": start,
            "length": len("".join(self.text)) - start,
        }
        if name == "a":
            entity = {**entity, "type": "text_link", "url": attrs.get("href")}
        self.entities.append(entity)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


_USERNAME = re.compile(r"(?<![\w@])@[A-Za-z][A-Za-z0-9_]{4,31}(?![\w])")


def parse_html(html: str) -> tuple[str, list[dict[str, Any]]]:
    """Like Telegram: known tags become entities, and a plain ``@username`` in the text becomes
    a mention of that account (a link to whoever holds the name)."""
    parser = _Html()
    parser.feed(html)
    parser.close()
    if parser.open:
        raise ApiError(400, "Bad Request: can't parse entities: unclosed tag")
    text = "".join(parser.text)
    mentions = [
        {"type": "mention", "offset": m.start(), "length": len(m.group(0))}
        for m in _USERNAME.finditer(text)
    ]
    return text, parser.entities + mentions


def member_json(user: dict[str, Any], status: str, **rights: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"status": status, "user": user}
    if status == "creator":
        out["is_anonymous"] = False
    elif status == "administrator":
        out.update({"can_be_edited": False, "is_anonymous": False})
        out.update({r: rights.get(r, True) for r in ADMIN_RIGHTS})
    elif status == "kicked":
        out["until_date"] = 0
    return out


class FakeTelegram:
    def __init__(
        self,
        token: str = "123456:TEST-token",
        limits: FakeLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        username: str = "referral_test_bot",
    ) -> None:
        self.token = token
        self.limits = limits or FakeLimits()
        self.clock = clock
        self.bot = {
            "id": int(token.split(":")[0]),
            "is_bot": True,
            "first_name": "Referrals",
            "username": username,
        }
        self.chats: dict[int, Chat] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.started: set[int] = set()  # users who opened a private chat with the bot
        self.links: dict[str, Link] = {}
        self.sent: list[Sent] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.commands: dict[str, list[dict[str, str]]] = {}
        self.too_many: list[tuple[int, int]] = []  # (chat, retry_after): 429s for a limit exceeded
        self.forced_429: dict[int, list[int]] = {}
        self.forced_answered: list[tuple[int, int]] = []
        self.approved: list[tuple[int, int]] = []
        self.migrated: dict[int, int] = {}  # basic group -> the supergroup it became
        self._pending_requests: dict[tuple[int, int], str | None] = {}
        self.answered: list[dict[str, Any]] = []
        self.webhook: dict[str, Any] | None = None
        self.updates: list[dict[str, Any]] = []
        self.allowed: set[str] = set(DEFAULT_UPDATES)
        self.handed_out = 0  # the newest update id a getUpdates (or the webhook) handed out
        self.served: list[dict[str, Any]] = []  # every update handed out, in order
        self.hanging: set[str] = set()  # methods that never answer (a stuck Bot API)
        self.hanging_chats: set[int] = set()  # calls about these chats never answer
        self._release = asyncio.Event()
        self._update_ids = itertools.count(1)
        self._user_ids = itertools.count(1000)
        self._chat_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count] = {}
        self._last_send: dict[int, float] = {}
        self._group_sends: dict[int, deque[float]] = {}
        self._all_sends: deque[float] = deque()
        self._all_calls: deque[float] = deque()
        self._new_update = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._pusher: asyncio.Task | None = None
        self.port = 0
        self._closing = False

    # -- server -----------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.base_url

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    async def stop(self) -> None:
        self._closing = True
        self._release.set()
        await self._notify()
        if self._pusher is not None:
            self._pusher.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        method = request.match_info["method"]
        params = await self._params(request)
        self.calls.append((method, params))
        if method in self.hanging or _chat_of(params) in self.hanging_chats:
            await self._release.wait()  # until the server stops
            return web.json_response({"ok": False, "error_code": 502, "description": "gone"})
        handler = getattr(self, f"api_{method}", None)
        try:
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            if method not in UNLIMITED:
                self._check_calls(method)
            result = await handler(params)
        except ApiError as exc:
            body: dict[str, Any] = {
                "ok": False,
                "error_code": exc.code,
                "description": exc.description,
            }
            if exc.retry_after is not None:
                body["parameters"] = {"retry_after": exc.retry_after}
            if exc.migrate_to is not None:
                body["parameters"] = {"migrate_to_chat_id": exc.migrate_to}
            return web.json_response(body, status=exc.code)
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    async def _params(request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            return await request.json()
        out: dict[str, Any] = {}
        for key, value in (await request.post()).items():
            try:
                out[key] = json.loads(value) if isinstance(value, str) else value
            except ValueError:
                out[key] = value
        return out

    # -- state helpers ------------------------------------------------------------------------

    def user(self, first_name: str, last_name: str | None = None, *, started: bool = False) -> dict:
        user: dict[str, Any] = {
            "id": next(self._user_ids),
            "is_bot": False,
            "first_name": first_name,
            "language_code": "en",
        }
        if last_name:
            user["last_name"] = last_name
        self.users[user["id"]] = user
        if started:
            self.started.add(user["id"])
        return user

    def chat(self, chat_id: int | str) -> Chat:
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            for chat in self.chats.values():
                if chat.username and "@" + chat.username == chat_id:
                    return chat
            raise ApiError(400, "Bad Request: chat not found")
        chat = self.chats.get(int(chat_id))
        if chat is None:
            if int(chat_id) in self.users and int(chat_id) in self.started:
                return self._private(int(chat_id))
            raise ApiError(400, "Bad Request: chat not found")
        return chat

    def _private(self, user_id: int) -> Chat:
        return self.chats.setdefault(user_id, Chat(user_id, "private", None, None))

    def _bot_member(self, chat: Chat) -> dict[str, Any]:
        return chat.members.get(self.bot["id"]) or member_json(self.bot, "left")

    def _require_admin(self, chat: Chat, right: str) -> None:
        me = self._bot_member(chat)
        if me["status"] != "administrator" or not me.get(right):
            raise ApiError(400, "Bad Request: not enough rights to manage chat invite link")

    def _push(self, kind: str, payload: dict[str, Any]) -> int:
        update_id = next(self._update_ids)
        self.updates.append({"update_id": update_id, kind: payload})
        asyncio.get_running_loop().create_task(self._notify())
        return update_id

    async def _notify(self) -> None:
        async with self._new_update:
            self._new_update.notify_all()

    def _change(self, chat: Chat, actor: dict, user: dict, old: dict, new: dict) -> dict:
        return {
            "chat": chat.json(),
            "from": actor,
            "date": int(time.time()),
            "old_chat_member": old,
            "new_chat_member": new,
        }

    # -- injecting what people do -------------------------------------------------------------

    def add_group(
        self,
        title: str,
        owner: dict[str, Any],
        *,
        username: str | None = None,
        bot_status: str = "administrator",
        can_invite_users: bool = True,
        kind: str = "supergroup",
    ) -> int:
        """A group created by ``owner``, who then adds the bot (a my_chat_member update)."""
        chat_id = -1_001_000_000_000 - next(self._chat_ids)
        chat = Chat(chat_id, kind, title, username)
        chat.members[owner["id"]] = member_json(owner, "creator")
        self.chats[chat_id] = chat
        self.set_bot_status(chat_id, bot_status, owner, can_invite_users=can_invite_users)
        return chat_id

    def add_channel(self, title: str, username: str | None = None) -> int:
        chat_id = -1_002_000_000_000 - next(self._chat_ids)
        chat = Chat(chat_id, "channel", title, username)
        chat.members[self.bot["id"]] = member_json(self.bot, "administrator")
        self.chats[chat_id] = chat
        return chat_id

    def add_broadcast_channel(
        self, title: str, owner: dict[str, Any], username: str | None = None
    ) -> int:
        """A channel created by ``owner``, who then makes the bot an administrator allowed to
        invite (a my_chat_member update, as Telegram sends it for a channel)."""
        chat_id = -1_002_000_000_000 - next(self._chat_ids)
        chat = Chat(chat_id, "channel", title, username)
        chat.members[owner["id"]] = member_json(owner, "creator")
        self.chats[chat_id] = chat
        self.set_bot_status(chat_id, "administrator", owner, can_invite_users=True)
        return chat_id

    def set_bot_status(self, chat_id: int, status: str, by: dict, **rights: bool) -> int:
        chat = self.chats[chat_id]
        old = self._bot_member(chat)
        new = member_json(self.bot, status, **rights)
        chat.members[self.bot["id"]] = new
        return self._push("my_chat_member", self._change(chat, by, self.bot, old, new))

    def migrate(self, chat_id: int, by: dict[str, Any]) -> int:
        """A basic group becomes a supergroup: a new id, the same members; the old chat says
        ``migrate_to_chat_id``, the new one ``migrate_from_chat_id``, sends to the old id fail."""
        old = self.chats[chat_id]
        new_id = -1_001_000_000_000 - next(self._chat_ids)
        new = Chat(new_id, "supergroup", old.title, old.username, dict(old.members))
        self.chats[new_id] = new
        self.migrated[chat_id] = new_id
        for link in self.links.values():  # invite links keep working, for the supergroup
            if link.chat_id == chat_id:
                link.chat_id = new_id
        for chat, key, value in ((old, "migrate_to_chat_id", new_id),
                                 (new, "migrate_from_chat_id", chat_id)):  # fmt: skip
            self._push("message", {
                "message_id": self._next_message(chat.id), "from": by, "chat": chat.json(),
                "date": int(time.time()), key: value,
            })  # fmt: skip
        return new_id

    def promote(self, chat_id: int, user: dict[str, Any]) -> None:
        self.chats[chat_id].members[user["id"]] = member_json(user, "administrator")

    def join(self, chat_id: int, user: dict[str, Any], link: str | None = None) -> int:
        """``user`` joins: through an invite link, or by the public "Join" button (no link)."""
        chat = self.chats[chat_id]
        used = None
        if link is not None:
            used = self.links[link]
            if used.revoked or used.chat_id != chat_id:
                raise ValueError("this invite link does not work")
            if used.member_limit is not None and len(used.used_by) >= used.member_limit:
                raise ValueError("this invite link has reached its member limit")
            if used.creates_join_request:
                return self.request_join(chat_id, user, link)
            used.used_by.append(user["id"])
        return self._enter(chat, user, used)

    def _enter(self, chat: Chat, user: dict, link: Link | None, via_request: bool = False) -> int:
        old = chat.members.get(user["id"]) or member_json(user, "left")
        new = member_json(user, "member")
        chat.members[user["id"]] = new
        change = self._change(chat, user, user, old, new)
        if link is not None:
            change["invite_link"] = link.json()
        elif via_request:
            change["via_join_request"] = True
        return self._push("chat_member", change)

    def request_join(self, chat_id: int, user: dict[str, Any], link: str | None = None) -> int:
        chat = self.chats[chat_id]
        request: dict[str, Any] = {
            "chat": chat.json(),
            "from": user,
            "user_chat_id": user["id"],
            "date": int(time.time()),
        }
        if link is not None:
            request["invite_link"] = self.links[link].json()
        self._pending_requests[(chat_id, user["id"])] = link
        return self._push("chat_join_request", request)

    def leave(self, chat_id: int, user: dict[str, Any], kicked: bool = False) -> int:
        chat = self.chats[chat_id]
        old = chat.members.get(user["id"]) or member_json(user, "member")
        new = member_json(user, "kicked" if kicked else "left")
        chat.members[user["id"]] = new
        return self._push("chat_member", self._change(chat, user, user, old, new))

    def say(self, chat_id: int, user: dict[str, Any], text: str, **extra: Any) -> int:
        """A message in a chat (``chat_id`` == the user's id for the private chat)."""
        if chat_id == user["id"]:
            self.started.add(user["id"])
            chat = self._private(user["id"])
            chat_json = {"id": user["id"], "type": "private", "first_name": user["first_name"]}
        else:
            chat = self.chats[chat_id]
            chat_json = chat.json()
        message: dict[str, Any] = {
            "message_id": self._next_message(chat.id),
            "from": user,
            "chat": chat_json,
            "date": int(time.time()),
            "text": text,
        }
        if text.startswith("/"):
            length = len(text.split()[0])
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        message.update(extra)
        return self._push("message", message)

    def press(self, sent: Sent, user: dict[str, Any], data: str) -> int:
        chat = self.chat(sent.chat_id)
        message = {
            "message_id": sent.message_id,
            "from": self.bot,
            "chat": chat.json(),
            "date": int(time.time()),
            "text": sent.text,
            "reply_markup": sent.reply_markup,
        }
        query = {
            "id": secrets.token_hex(8),
            "from": user,
            "message": message,
            "chat_instance": str(chat.id),
            "data": data,
        }
        return self._push("callback_query", query)

    def fail_next(self, chat_id: int, retry_after: int = 3) -> None:
        """The next send to this chat gets a 429 (as when Telegram is stricter than documented)."""
        self.forced_429.setdefault(chat_id, []).append(retry_after)

    def _next_message(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    # -- what the bot did -----------------------------------------------------------------------

    def texts(self, chat_id: int) -> list[str]:
        return [s.text for s in self.sent if s.chat_id == chat_id]

    def called(self, method: str) -> list[dict[str, Any]]:
        return [p for m, p in self.calls if m == method]

    # -- the limits -----------------------------------------------------------------------------

    def _check_limits(self, chat: Chat) -> None:
        forced = self.forced_429.get(chat.id)
        if forced:
            wait = forced.pop(0)
            self.forced_answered.append((chat.id, wait))
            raise ApiError(429, f"Too Many Requests: retry after {wait}", wait)
        now, lim = self.clock(), self.limits
        waits = []
        last = self._last_send.get(chat.id)
        if last is not None and now - last < lim.per_chat_interval:
            waits.append(last + lim.per_chat_interval - now)
        if chat.type in ("group", "supergroup"):
            sends = self._group_sends.setdefault(chat.id, deque())
            while sends and sends[0] <= now - lim.group_window:
                sends.popleft()
            if len(sends) >= lim.group_max:
                waits.append(sends[0] + lim.group_window - now)
        while self._all_sends and self._all_sends[0] <= now - lim.global_window:
            self._all_sends.popleft()
        if len(self._all_sends) >= lim.global_max:
            waits.append(self._all_sends[0] + lim.global_window - now)
        if waits:
            wait = max(1, math.ceil(max(waits)))
            self.too_many.append((chat.id, wait))
            raise ApiError(429, f"Too Many Requests: retry after {wait}", wait)
        self._last_send[chat.id] = now
        if chat.type in ("group", "supergroup"):
            self._group_sends[chat.id].append(now)
        self._all_sends.append(now)

    def _check_calls(self, method: str) -> None:
        """Methods that send no message have a flood limit of their own (overall)."""
        now, lim = self.clock(), self.limits
        while self._all_calls and self._all_calls[0] <= now - lim.calls_window:
            self._all_calls.popleft()
        if len(self._all_calls) >= lim.calls_max:
            wait = max(1, math.ceil(self._all_calls[0] + lim.calls_window - now))
            self.too_many.append((0, wait))
            raise ApiError(429, f"Too Many Requests: retry after {wait}", wait)
        self._all_calls.append(now)

    # -- Bot API methods ------------------------------------------------------------------------

    async def api_getMe(self, p: dict) -> dict:
        return {
            **self.bot,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def api_deleteWebhook(self, p: dict) -> bool:
        self.webhook = None
        if p.get("drop_pending_updates"):
            self.updates.clear()
        return True

    async def api_setWebhook(self, p: dict) -> bool:
        if not str(p["url"]).startswith("http://127.0.0.1"):
            raise ApiError(400, "Bad Request: this fake only calls 127.0.0.1")
        self.webhook = p
        if "allowed_updates" in p:
            self.allowed = set(p["allowed_updates"]) or set(DEFAULT_UPDATES)
        if p.get("drop_pending_updates"):
            self.updates.clear()
        if self._pusher is None or self._pusher.done():
            self._pusher = asyncio.get_running_loop().create_task(self._push_webhook())
        return True

    async def _push_webhook(self) -> None:
        async with ClientSession() as session:
            while self.webhook is not None:
                pending = self._deliverable()
                if not pending:
                    async with self._new_update:
                        await asyncio.wait_for(self._new_update.wait(), 0.5)
                    continue
                update = pending[0]
                headers = {}
                if self.webhook.get("secret_token"):
                    headers["X-Telegram-Bot-Api-Secret-Token"] = self.webhook["secret_token"]
                async with session.post(self.webhook["url"], json=update, headers=headers) as r:
                    if r.status == 200:
                        self.handed_out = update["update_id"]
                        self.served.append(update)
                        self.updates.remove(update)

    def _deliverable(self) -> list[dict[str, Any]]:
        out = []
        for update in list(self.updates):
            kind = next(k for k in update if k != "update_id")
            if kind in self.allowed:
                out.append(update)
            else:  # Telegram never stores updates the bot did not ask for
                self.updates.remove(update)
        return out

    async def api_getUpdates(self, p: dict) -> list:
        if self.webhook is not None:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active")
        if "allowed_updates" in p and p["allowed_updates"] is not None:
            self.allowed = set(p["allowed_updates"]) or set(DEFAULT_UPDATES)
        offset = int(p.get("offset") or 0)
        if offset:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        deadline = time.monotonic() + float(p.get("timeout") or 0)
        while True:
            ready = self._deliverable()[: int(p.get("limit") or 100)]
            remaining = deadline - time.monotonic()
            if ready or remaining <= 0 or self._closing:
                break
            async with self._new_update:
                try:
                    await asyncio.wait_for(self._new_update.wait(), remaining)
                except TimeoutError:
                    pass
        if ready:
            self.handed_out = max(self.handed_out, ready[-1]["update_id"])
            self.served += [u for u in ready if u not in self.served]
        return ready

    async def api_setMyCommands(self, p: dict) -> bool:
        scope = (p.get("scope") or {"type": "default"})["type"]
        self.commands[scope] = p["commands"]
        return True

    async def api_sendMessage(self, p: dict) -> dict:
        chat_id = p["chat_id"]
        if isinstance(chat_id, int) and chat_id in self.users and chat_id not in self.started:
            raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        chat = self.chat(chat_id)
        if chat.id in self.migrated:
            raise ApiError(400, "Bad Request: group chat was upgraded to a supergroup chat",
                           migrate_to=self.migrated[chat.id])  # fmt: skip
        if chat.type != "private" and not self._in(chat, self.bot["id"]):
            raise ApiError(403, "Forbidden: bot is not a member of the supergroup chat")
        html = str(p["text"])
        if p.get("parse_mode") == "HTML":
            text, entities = parse_html(html)
        else:
            text, entities = html, []
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text.encode("utf-16-le")) // 2 > 4096:
            raise ApiError(400, "Bad Request: message is too long")
        self._check_limits(chat)
        sent = Sent(
            chat.id,
            self._next_message(chat.id),
            html,
            text,
            entities,
            p.get("reply_markup"),
            self.clock(),
        )
        self.sent.append(sent)
        message: dict[str, Any] = {
            "message_id": sent.message_id,
            "from": self.bot,
            "chat": chat.json()
            if chat.type != "private"
            else {"id": chat.id, "type": "private", "first_name": "x"},
            "date": int(time.time()),
            "text": text,
        }
        if entities:
            message["entities"] = entities
        if sent.reply_markup:
            message["reply_markup"] = sent.reply_markup
        return message

    @staticmethod
    def _in(chat: Chat, user_id: int) -> bool:
        m = chat.members.get(user_id)
        return m is not None and m["status"] in ("creator", "administrator", "member")

    async def api_getChat(self, p: dict) -> dict:
        chat = self.chat(p["chat_id"])
        return {
            **chat.json(),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    async def api_getChatMember(self, p: dict) -> dict:
        chat = self.chat(p["chat_id"])
        user_id = int(p["user_id"])
        if user_id not in self.users and user_id != self.bot["id"]:
            raise ApiError(400, "Bad Request: user not found")
        user = self.users.get(user_id, self.bot)
        return chat.members.get(user_id) or member_json(user, "left")

    async def api_getChatAdministrators(self, p: dict) -> list:
        chat = self.chat(p["chat_id"])
        return [m for m in chat.members.values() if m["status"] in ("creator", "administrator")]

    async def api_createChatInviteLink(self, p: dict) -> dict:
        chat = self.chat(p["chat_id"])
        self._require_admin(chat, "can_invite_users")
        name = p.get("name")
        if name is not None and len(str(name)) > 32:
            raise ApiError(400, "Bad Request: invite link name is too long")
        limit = p.get("member_limit")
        if limit is not None and not 1 <= int(limit) <= 99999:
            raise ApiError(400, "Bad Request: member limit is invalid")
        url = f"https://t.me/+{secrets.token_urlsafe(12)}"
        link = Link(
            url,
            chat.id,
            self.bot,
            None if name is None else str(name),
            None if limit is None else int(limit),
            p.get("expire_date"),
            bool(p.get("creates_join_request")),
        )
        self.links[url] = link
        return link.json()

    async def api_revokeChatInviteLink(self, p: dict) -> dict:
        chat = self.chat(p["chat_id"])
        self._require_admin(chat, "can_invite_users")
        link = self.links.get(str(p["invite_link"]))
        if link is None or link.chat_id != chat.id:
            raise ApiError(400, "Bad Request: INVITE_HASH_EXPIRED")
        if link.creator.get("id") != self.bot["id"]:  # bots can't use other admins' links
            raise ApiError(400, "Bad Request: CHAT_ADMIN_REQUIRED")
        link.revoked = True
        return link.json()

    def admin_link(self, chat_id: int, admin: dict[str, Any], name: str) -> str:
        """An invite link another admin made by hand (its name means nothing to the bot)."""
        url = f"https://t.me/+{secrets.token_urlsafe(12)}"
        self.links[url] = Link(url, chat_id, admin, name)
        return url

    async def api_setChatMemberTag(self, p: dict) -> bool:
        """Bot API 9.5: a tag shown next to a regular member's name (0-16 characters, no
        emoji); an empty or missing tag removes it. The bot needs can_manage_tags."""
        chat = self.chat(p["chat_id"])
        if chat.type not in ("group", "supergroup"):
            raise ApiError(400, "Bad Request: chat not found")
        me = self._bot_member(chat)
        if me["status"] != "administrator" or not me.get("can_manage_tags"):
            raise ApiError(400, "Bad Request: not enough rights to manage tags")
        member = chat.members.get(int(p["user_id"]))
        if member is None or member["status"] != "member":
            raise ApiError(400, "Bad Request: PARTICIPANT_ID_INVALID")
        tag = str(p.get("tag") or "")
        if len(tag) > 16 or any(unicodedata.category(ch) == "So" for ch in tag):
            raise ApiError(400, "Bad Request: TAG_INVALID")
        if tag:
            member["tag"] = tag
        else:
            member.pop("tag", None)
        return True

    def tag_of(self, chat_id: int, user_id: int) -> str | None:
        return self.chats[chat_id].members.get(user_id, {}).get("tag")

    async def api_approveChatJoinRequest(self, p: dict) -> bool:
        chat = self.chat(p["chat_id"])
        self._require_admin(chat, "can_invite_users")
        key = (chat.id, int(p["user_id"]))
        if key not in self._pending_requests:
            raise ApiError(400, "Bad Request: HIDE_REQUESTER_MISSING")
        url = self._pending_requests.pop(key)
        link = self.links[url] if url else None
        if link is not None:
            link.used_by.append(key[1])
        self.approved.append(key)
        self._enter(chat, self.users[key[1]], link, via_request=link is None)
        return True

    async def api_declineChatJoinRequest(self, p: dict) -> bool:
        chat = self.chat(p["chat_id"])
        if self._pending_requests.pop((chat.id, int(p["user_id"])), "missing") == "missing":
            raise ApiError(400, "Bad Request: HIDE_REQUESTER_MISSING")
        return True

    async def api_answerCallbackQuery(self, p: dict) -> bool:
        self.answered.append(p)
        return True

    async def api_editMessageReplyMarkup(self, p: dict) -> dict:
        chat = self.chat(p["chat_id"])
        for sent in self.sent:
            if sent.chat_id == chat.id and sent.message_id == int(p["message_id"]):
                sent.reply_markup = p.get("reply_markup")
                return {
                    "message_id": sent.message_id,
                    "chat": chat.json(),
                    "date": int(time.time()),
                    "text": sent.text,
                }
        raise ApiError(400, "Bad Request: message to edit not found")

    async def api_editMessageText(self, p: dict) -> dict:
        chat = self.chat(p["chat_id"])
        html = str(p["text"])
        text, entities = parse_html(html) if p.get("parse_mode") == "HTML" else (html, [])
        if len(text.encode("utf-16-le")) // 2 > 4096:
            raise ApiError(400, "Bad Request: message is too long")
        for sent in self.sent:
            if sent.chat_id == chat.id and sent.message_id == int(p["message_id"]):
                sent.html, sent.text, sent.entities = html, text, entities
                sent.reply_markup = p.get("reply_markup")
                return {
                    "message_id": sent.message_id,
                    "chat": chat.json(),
                    "date": int(time.time()),
                    "text": sent.text,
                }
        raise ApiError(400, "Bad Request: message to edit not found")
