"""The Discord adapter: slash commands, invite attribution, role rewards (see docs/discord.md)."""

from bot.platforms.discord.platform import DiscordPlatform, account_created_at

__all__ = ["DiscordPlatform", "account_created_at"]
