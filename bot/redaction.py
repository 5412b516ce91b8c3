"""Secrets never reach a log line: one filter on the root logger's handlers for every secret.

``install`` is called once by the CLI with every configured secret (platform tokens, the webhook
secret, the database password). The filter rewrites each record before any handler formats it:
the message with its arguments, the traceback text and the stack text. Bot API URLs carry the
token in their path (``/bot<token>/getUpdates``), so any such path is masked too, even for a
token that was never configured. httpx logs every request URL at INFO: it is held to WARNING.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable

from sqlalchemy.engine import make_url

from config.settings import Settings

MASK = "[redacted]"
_MIN_SECRET = 6  # shorter values would mask ordinary words
_BOT_API_PATH = re.compile(r"/bot\d+:[A-Za-z0-9_-]+")
_CHATTY = ("httpx", "httpcore")  # per-request lines, URLs included


class RedactSecrets(logging.Filter):
    """Masks the given secrets (and any Bot API token in a URL) in a record, in place."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__("redaction")
        self.secrets = sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return _BOT_API_PATH.sub("/bot" + MASK, text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what there is, still masked
            message = f"{record.msg} {record.args}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def secrets_of(settings: Settings, environ: dict[str, str] | None = None) -> list[str]:
    """Every secret the settings point at, whether or not its platform is enabled."""
    env = dict(os.environ if environ is None else environ)
    found: list[str] = []
    for section in (settings.telegram, settings.discord):
        value = env.get(section.token_env, "")
        if section.token_file:
            try:
                with open(section.token_file, encoding="utf-8") as handle:
                    value = handle.read()
            except OSError:
                value = ""
        found.append(value.strip())
    found.append(env.get(settings.telegram.webhook_secret_env, "").strip())
    try:
        found.append(make_url(settings.database.url).password or "")
    except Exception:  # an unparsable URL is a configuration error reported elsewhere
        pass
    return [s for s in found if s]


def install(secrets: Iterable[str], root: logging.Logger | None = None) -> RedactSecrets:
    """Put one filter on every handler of the root logger (records of every logger pass
    through them) and hold the per-request HTTP loggers to WARNING."""
    root = root or logging.getLogger()
    redaction = RedactSecrets(secrets)
    for handler in root.handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactSecrets)]:
            handler.removeFilter(old)
        handler.addFilter(redaction)
    root.addFilter(redaction)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
    return redaction
