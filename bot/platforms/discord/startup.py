"""What a failed Discord start means: a rejected token is final, the rest is retried."""

from __future__ import annotations

import discord
from aiohttp import ClientError

from bot.engine.text import t
from bot.supervise import StartFailure
from config.i18n import Catalog
from config.settings import DiscordSettings


def start_failure(exc: BaseException, settings: DiscordSettings, catalog: Catalog) -> StartFailure:
    if isinstance(exc, discord.LoginFailure) or (
        isinstance(exc, discord.HTTPException) and exc.status == 401
    ):
        fix = catalog.render(t("ops.fix.discord_token", env=settings.token_env))
        return StartFailure(True, catalog.render(t("ops.start.token_rejected")), fix)
    if isinstance(exc, discord.HTTPException):
        return StartFailure(False, f"HTTP {exc.status} from Discord")
    if isinstance(exc, ClientError | OSError | discord.GatewayNotFound):
        return StartFailure(False, f"{type(exc).__name__}: {exc}")
    return StartFailure(False, f"{type(exc).__name__}: {exc}")
