"""The Telegram adapter (python-telegram-bot): personal invite links, deep links, join
requests, commands with scopes, moderator buttons and paced delivery. See docs/telegram.md."""

from bot.platforms.telegram.adapter import ALLOWED_UPDATES, PLATFORM, TelegramPlatform
from bot.platforms.telegram.pacing import TELEGRAM_LIMITS, Limits

__all__ = ["ALLOWED_UPDATES", "PLATFORM", "TELEGRAM_LIMITS", "Limits", "TelegramPlatform"]
