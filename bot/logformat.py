"""Log output: ``key=value`` text lines or one JSON object a line, and quiet third parties.

``setup_logging`` is the one place that installs handlers. Every handler gets the filters it
is given (the secret-redaction filter is passed in here), so whatever reaches stderr went
through them. The JSON lines carry the same keys as the text lines: ``time``, ``level``,
``logger``, then each ``key=value`` of the message (``event`` first), then ``message`` for any
words that are not a key, and ``exc`` for a traceback.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Libraries that log every request or job run at INFO; kept at third_party_level (WARNING).
THIRD_PARTY = (
    "apscheduler",
    "aiohttp",
    "asyncio",
    "discord",
    "httpcore",
    "httpx",
    "telegram",
    "alembic",
    "aiosqlite",
    "sqlalchemy",
    "tzlocal",
)
_PAIR = re.compile(r"""(?:^|\s)([A-Za-z_][\w.]*)=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S*)""")


def parse_pairs(message: str) -> tuple[dict[str, str], str]:
    """``event=x a=1 b='two words'`` -> ({event: x, a: 1, b: two words}, leftover words)."""
    pairs: dict[str, str] = {}
    rest: list[str] = []
    last = 0
    for match in _PAIR.finditer(message):
        rest.append(message[last : match.start()])
        key, value = match.group(1), match.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        pairs[key] = value
        last = match.end()
    rest.append(message[last:])
    return pairs, " ".join(" ".join(rest).split())


class JsonFormatter(logging.Formatter):
    """One JSON object a line; the message's ``key=value`` pairs become keys of their own."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        pairs, words = parse_pairs(message)
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        for key, value in pairs.items():
            out.setdefault(key, value)
        if words:
            out["message"] = words
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class _NoVoiceWarnings(logging.Filter):
    """discord.py warns at every start that voice is not supported; this bot has no voice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "voice will NOT be supported" not in record.getMessage()


_VOICE = _NoVoiceWarnings()


def setup_logging(
    level: str = "INFO",
    fmt: str = "text",
    *,
    third_party_level: str = "WARNING",
    filters: Iterable[logging.Filter] = (),
    stream: TextIO | None = None,
    keep_foreign: bool = False,
) -> logging.Handler | None:
    """Install one stderr handler of the chosen format on the root logger.

    A handler installed here before is replaced. With ``keep_foreign``, logging that someone
    else configured (a test runner's capture, an embedding program) is left as it is, like
    ``logging.basicConfig`` does, and None is returned.
    """
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "referral_bot", False)]
    if keep_foreign and len(ours) < len(root.handlers):
        return None
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.referral_bot = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    for f in filters:
        handler.addFilter(f)
    for old in ours:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    quiet = logging.getLevelName(third_party_level.upper())
    for name in THIRD_PARTY:
        # Never louder than our own level: DEBUG for us does not mean every HTTP request.
        logging.getLogger(name).setLevel(max(quiet, root.level))
    logging.getLogger("discord.client").addFilter(_VOICE)
    return handler
