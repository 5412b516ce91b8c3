"""The pacer as python-telegram-bot's rate limiter: every Bot API call goes through it.

Sends (``sendMessage`` and the other methods that post a message) take a slot of the message
pacer: per chat, per group and overall. Every other call (invite links, join requests, member
lookups, callback answers) takes a slot of a separate overall window, so a burst of lookups can't
flood the Bot API either, and never eats the messages' budget. ``getUpdates`` is never limited
(PTB's rule). A 429 blocks the chat for ``retry_after`` and gives the refused slot back, so a
retry costs one slot, not two. ``rate_limit_args={"retries": n}`` retries up to n times after a
429; the default 0 hands the 429 to the caller (the outbox reschedules the item).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

from bot.platforms.telegram.errors import retry_seconds
from bot.platforms.telegram.pacing import Pacer

SENDS = frozenset(
    {
        "sendMessage", "sendPhoto", "sendDocument", "sendAnimation", "sendVideo", "sendAudio",
        "sendVoice", "sendSticker", "sendMediaGroup", "sendPoll", "sendLocation", "sendContact",
        "copyMessage", "copyMessages", "forwardMessage", "forwardMessages",
    }
)  # fmt: skip
UNLIMITED = frozenset({"getUpdates", "getMe", "setWebhook", "deleteWebhook", "getWebhookInfo"})

Callback = Callable[..., Coroutine[Any, Any, Any]]


def _chat(data: dict[str, Any]) -> int | None:
    try:
        return int(data["chat_id"])
    except (KeyError, TypeError, ValueError):
        return None


class PacedRateLimiter(BaseRateLimiter[dict[str, int]]):
    def __init__(self, sends: Pacer, calls: Pacer) -> None:
        self.sends = sends
        self.calls = calls

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def process_request(
        self,
        callback: Callback,
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: dict[str, int] | None,
    ) -> Any:
        if endpoint in UNLIMITED:
            return await callback(*args, **kwargs)
        retries = int((rate_limit_args or {}).get("retries", 0))
        chat = _chat(data)
        for attempt in range(retries + 1):
            try:
                if endpoint in SENDS and chat is not None:
                    return await self._send(chat, callback, args, kwargs)
                async with self.calls.call() as ticket:
                    try:
                        return await callback(*args, **kwargs)
                    except RetryAfter:
                        ticket.release()
                        raise
            except RetryAfter as exc:
                wait = retry_seconds(exc)
                if endpoint in SENDS and chat is not None:
                    self.sends.blocked(chat, wait)  # the next slot waits it out
                elif attempt < retries:
                    await asyncio.sleep(wait)
                if attempt == retries:
                    raise
        raise AssertionError("unreachable")

    async def _send(self, chat: int, callback: Callback, args: Any, kwargs: dict) -> Any:
        async with self.sends.slot(chat, chat < 0) as ticket:
            try:
                return await callback(*args, **kwargs)
            except RetryAfter:
                ticket.release()  # Telegram did not count it: neither do we
                raise
