"""The referral domain. Platform-neutral: no import of discord, telegram, sqlalchemy or aiohttp."""
