"""What a failed Telegram start means: a rejected token is final, the rest is retried."""

from __future__ import annotations

from telegram.error import InvalidToken, NetworkError, TelegramError

from bot.engine.text import t
from bot.supervise import StartFailure
from config.i18n import Catalog
from config.settings import TelegramSettings


def start_failure(exc: BaseException, settings: TelegramSettings, catalog: Catalog) -> StartFailure:
    if isinstance(exc, InvalidToken):
        fix = catalog.render(t("ops.fix.telegram_token", env=settings.token_env))
        return StartFailure(True, catalog.render(t("ops.start.token_rejected")), fix)
    if isinstance(exc, NetworkError | TelegramError):
        return StartFailure(False, f"{type(exc).__name__}: {exc.message}")
    return StartFailure(False, f"{type(exc).__name__}: {exc}")
