"""Webhook mode: Telegram POSTs each update to telegram.webhook_url.

A small aiohttp server listens on webhook_listen:webhook_port (put a TLS proxy in front of it)
and checks Telegram's secret header. The webhook is not deleted on stop: Telegram keeps the
updates and delivers them once the bot is back.
"""

from __future__ import annotations

import hmac
import logging
import os
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from aiohttp import web
from telegram import Update
from telegram.ext import Application

if TYPE_CHECKING:
    from bot.platforms.telegram.adapter import TelegramPlatform

log = logging.getLogger(__name__)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class WebhookServer:
    def __init__(self, tg: TelegramPlatform, application: Application) -> None:
        self.tg = tg
        self.application = application
        self.settings = tg.settings
        self.secret = os.environ.get(self.settings.webhook_secret_env, "")
        self.path = urlparse(self.settings.webhook_url).path or "/"
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        from bot.platforms.telegram.adapter import ALLOWED_UPDATES

        server = web.Application()
        server.router.add_post(self.path, self.receive)
        self._runner = web.AppRunner(server, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.webhook_listen, self.settings.webhook_port)
        await site.start()
        await self.application.bot.set_webhook(
            self.settings.webhook_url,
            allowed_updates=list(ALLOWED_UPDATES),
            secret_token=self.secret or None,
            drop_pending_updates=False,
        )
        log.info("event=telegram.webhook_set path=%s", self.path)

    async def receive(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "")
        if self.secret and not hmac.compare_digest(given, self.secret):
            return web.Response(status=403)
        try:
            update = Update.de_json(await request.json(), self.application.bot)
        except Exception:  # a malformed body: Telegram never sends one
            log.warning("event=telegram.webhook_bad_update")
            return web.Response(status=400)
        await self.application.update_queue.put(update)
        return web.Response(status=200)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
