"""Settings: config/defaults.toml, then a TOML file, then REFERRAL_BOT_* environment variables.

Validated at start; every error names the key. Tokens are never read from the TOML file itself,
only from the environment or from a file whose path the TOML names.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULTS = Path(__file__).with_name("defaults.toml")
ENV_PREFIX = "REFERRAL_BOT_"


class ConfigError(ValueError):
    """A setting is wrong; the message names the key and what is allowed."""


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite+aiosqlite:///data/referral-bot.db"


@dataclass(frozen=True)
class JobSettings:
    sweep_seconds: int = 300
    announce_seconds: int = 60
    digest_check_seconds: int = 900
    activity_flush_seconds: int = 5
    outbox_poll_seconds: int = 2
    recheck_seconds: int = 3600
    leader_check_seconds: int = 5  # PostgreSQL: how often a follower tries to become leader


@dataclass(frozen=True)
class OutboxSettings:
    max_attempts: int = 8
    base_backoff_seconds: int = 5
    max_backoff_seconds: int = 3600
    delivery_timeout_seconds: int = 30  # a platform call with no answer by then is a failure
    revive_seconds: int = 3600  # dead letters (attempts used up) get a new try at least this often
    lease_seconds: int = 60  # a claimed item is another process's to take after this (crash)


@dataclass(frozen=True)
class CodeSettings:
    attempt_limit: int = 5
    attempt_window_seconds: int = 600
    lock_seconds: int = 1800


@dataclass(frozen=True)
class ConsoleSettings:
    enabled: bool = True
    communities: tuple[str, ...] = ("lounge",)
    # `run` reads `advance <N>(m|h|d)` from the console to move this process's clock (tests).
    clock_controls: bool = False


@dataclass(frozen=True)
class DiscordSettings:
    enabled: bool = False
    token_env: str = "DISCORD_TOKEN"  # the token is read from this environment variable...
    token_file: str = ""  # ...or from this file; never from the TOML itself
    guild_ids: tuple[str, ...] = ()  # sync slash commands to these guilds only (empty: global)
    invite_channel: str = ""  # where personal invites are created (empty: the system channel)
    shard_count: int = 0  # 0: one process decides (AutoShardedClient when in many guilds)
    shard_ids: tuple[str, ...] = ()  # the shards this process runs, e.g. ["0", "1"]
    burst_window_ms: int = 1500  # joins within this window share one invite fetch


@dataclass(frozen=True)
class TelegramSettings:
    enabled: bool = False
    token_env: str = "TELEGRAM_TOKEN"
    token_file: str = ""
    base_url: str = "https://api.telegram.org/bot"  # a self-hosted Bot API server goes here
    mode: str = "polling"  # polling | webhook
    webhook_url: str = ""
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = 8443
    webhook_secret_env: str = "TELEGRAM_WEBHOOK_SECRET"
    moderators_chat_id: str = ""


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"


@dataclass(frozen=True)
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    jobs: JobSettings = field(default_factory=JobSettings)
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    codes: CodeSettings = field(default_factory=CodeSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    discord: DiscordSettings = field(default_factory=DiscordSettings)
    telegram: TelegramSettings = field(default_factory=TelegramSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    program: dict[str, Any] = field(default_factory=dict)


_SECTIONS = {f.name: f for f in fields(Settings)}
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _coerce(key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a whole number, got {value!r}") from None
        if number < 0:
            raise ConfigError(f"{key}: must not be negative, got {number}")
        return number
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of names, got {value!r}")
        return tuple(value)
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected text, got {value!r}")
    return value


def _section(name: str, data: Any) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"[{name}] must be a table of settings")
    cls = _SECTIONS[name].default_factory()  # type: ignore[misc]
    if name == "program":
        return dict(data)
    known = {f.name: getattr(cls, f.name) for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"{name}.{unknown[0]}: unknown setting; allowed: {', '.join(sorted(known))}"
        )
    values = {k: _coerce(f"{name}.{k}", v, known[k]) for k, v in data.items()}
    return type(cls)(**{**known, **values})


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        out.setdefault(section, {})[key] = value
    return out


def read_token(key: str, env_name: str, file: str, environ: dict[str, str] | None = None) -> str:
    """A platform token from the environment or a file; the message never shows the token."""
    env = dict(os.environ if environ is None else environ)
    if file:
        path = Path(file)
        if not path.is_file():
            raise ConfigError(f"{key}.token_file: no such file {file!r}")
        token = path.read_text().strip()
    else:
        token = env.get(env_name, "").strip()
    if not token:
        raise ConfigError(
            f"{key}: no token; set the {env_name} environment variable or {key}.token_file"
        )
    return token


def load(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    data = tomllib.loads(DEFAULTS.read_text())
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"--config: no such file {str(file)!r}")
        try:
            data = _merge(data, tomllib.loads(file.read_text()))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML ({exc})") from None
    data = _merge(data, _env_overrides(dict(os.environ if environ is None else environ)))
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise ConfigError(
            f"[{unknown[0]}]: unknown section; allowed: {', '.join(sorted(_SECTIONS))}"
        )
    settings = Settings(**{name: _section(name, value) for name, value in data.items()})
    if settings.logging.level.upper() not in _LEVELS:
        raise ConfigError(f"logging.level: expected one of {', '.join(_LEVELS)}")
    if settings.telegram.mode not in ("polling", "webhook"):
        raise ConfigError("telegram.mode: expected polling or webhook")
    url = settings.database.url
    if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise ConfigError(
            "database.url: expected sqlite+aiosqlite:///path/file.db or "
            "postgresql+asyncpg://user@host/db"
        )
    return settings
