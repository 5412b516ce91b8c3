"""Webhook mode: Telegram POSTs each update to telegram.webhook_url.

A small aiohttp server listens on webhook_listen:webhook_port (put a TLS proxy in front of it)
and checks Telegram's secret header. Without a secret the bot refuses to start, unless
``allow_unauthenticated = true`` (then it warns at every start). Bodies are capped and a client
that sends its body too slowly is cut off. An update is answered 200 only once it is stored in
the inbox (see inbox.py): what Telegram considers delivered is never lost. The webhook is not
deleted on stop: Telegram keeps the updates and delivers them once the bot is back.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from aiohttp import web
from telegram import Update
from telegram.ext import Application

from config.settings import ConfigError, TelegramSettings

if TYPE_CHECKING:
    from bot.platforms.telegram.adapter import TelegramPlatform


def lane_of_update(update: Update) -> str:
    from bot.platforms.telegram.adapter import lane_of_update as lane

    return lane(update)

log = logging.getLogger(__name__)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # what Telegram accepts as secret_token
MAX_BODY = 256 * 1024  # an update is a few kilobytes; anything this large is not Telegram
BODY_SECONDS = 10.0  # a client that takes longer to send its body is cut off


def webhook_secret(settings: TelegramSettings, environ: dict[str, str] | None = None) -> str:
    """The secret Telegram must send, checked before anything starts ("" only when the admin
    explicitly allowed an unauthenticated webhook)."""
    env = os.environ if environ is None else environ
    secret = env.get(settings.webhook_secret_env, "").strip()
    if secret and not _SECRET.match(secret):
        raise ConfigError(
            f"telegram.webhook_secret_env: the secret in {settings.webhook_secret_env} must be "
            "1 to 256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)"
        )
    if not secret and not settings.allow_unauthenticated:
        raise ConfigError(
            f"telegram.webhook_secret_env: webhook mode needs a secret; set "
            f"{settings.webhook_secret_env} (1 to 256 characters of A-Z, a-z, 0-9, _ and -), "
            "or set telegram.allow_unauthenticated = true to accept anyone's updates"
        )
    return secret


class WebhookServer:
    def __init__(self, tg: TelegramPlatform, application: Application) -> None:
        self.tg = tg
        self.application = application
        self.settings = tg.settings
        self.secret = webhook_secret(self.settings)
        self.path = urlparse(self.settings.webhook_url).path or "/"
        self.body_seconds = BODY_SECONDS
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:

        if not self.secret:
            log.warning(
                "event=telegram.webhook_unauthenticated: anyone who can reach %s can send "
                "updates (telegram.allow_unauthenticated = true)",
                self.path,
            )
        server = web.Application(client_max_size=MAX_BODY)
        server.router.add_post(self.path, self.receive)
        self._runner = web.AppRunner(server, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.webhook_listen, self.settings.webhook_port)
        await site.start()
        await self.application.bot.set_webhook(
            self.settings.webhook_url,
            allowed_updates=list(self.tg.allowed_updates),
            secret_token=self.secret or None,
            drop_pending_updates=False,
        )
        log.info("event=telegram.webhook_set path=%s", self.path)

    def _authentic(self, request: web.Request) -> bool:
        if not self.secret:
            return True
        given = request.headers.get(SECRET_HEADER, "")
        # bytes, not str: a header with non-ASCII characters is just a wrong secret
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.secret.encode())

    async def receive(self, request: web.Request) -> web.Response:
        if not self._authentic(request):
            return web.Response(status=403)
        if (request.content_length or 0) > MAX_BODY:
            return web.Response(status=413)
        try:
            body = await asyncio.wait_for(request.read(), self.body_seconds)
        except TimeoutError:
            log.warning("event=telegram.webhook_slow_client")
            return web.Response(status=408)
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413)
        try:
            data = json.loads(body)
            update = Update.de_json(data, self.application.bot)
        except Exception:  # a malformed body: Telegram never sends one
            log.warning("event=telegram.webhook_bad_update")
            return web.Response(status=400)
        assert self.tg.inbox is not None
        # stored before Telegram hears 200: an update it considers delivered is never lost
        await self.tg.inbox.receive([(update.update_id, lane_of_update(update), data)])
        return web.Response(status=200)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
