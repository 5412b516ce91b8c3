"""Which platforms a process runs, from the settings. Adapters are imported only when enabled."""

from __future__ import annotations

from bot.platforms.base import Platform
from bot.platforms.console import ConsolePlatform
from config.settings import Settings, read_token


def build_platforms(settings: Settings) -> list[Platform]:
    platforms: list[Platform] = []
    if settings.console.enabled:
        platforms.append(ConsolePlatform())
    if settings.discord.enabled:
        from bot.platforms.discord import DiscordPlatform

        d = settings.discord
        token = read_token("discord", d.token_env, d.token_file)
        platforms.append(DiscordPlatform(d, token, burst_window=d.burst_window_ms / 1000))
    if settings.telegram.enabled:
        from bot.platforms.telegram import TelegramPlatform

        tg = settings.telegram
        platforms.append(TelegramPlatform(tg, read_token("telegram", tg.token_env, tg.token_file)))
    return platforms
