"""Bot API errors, as the outbox understands them."""

from __future__ import annotations

import re
import warnings
from datetime import timedelta

from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from bot.platforms.base import DeliveryError

# A private message to a member who never started the bot, or who blocked or left it: expected
# for many newcomers, not a fault anyone can fix.
_UNREACHABLE = re.compile(
    r"can't initiate conversation|blocked by the user|user is deactivated", re.IGNORECASE
)


def retry_seconds(exc: RetryAfter) -> float:
    value = getattr(exc, "_retry_after", None)
    if not isinstance(value, timedelta):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def delivery_error(exc: TelegramError, what: str) -> DeliveryError:
    """429 waits (only this item); blocked, kicked or unknown chats are final; outages retry."""
    if isinstance(exc, RetryAfter):
        wait = retry_seconds(exc)
        return DeliveryError(
            f"{what}: 429, retry after {wait:g}s",
            retry_after=wait,
            counts_as_attempt=False,
            rate_limited=True,
        )
    if isinstance(exc, Forbidden) and _UNREACHABLE.search(exc.message):
        # Without the item's key: /outbox groups these by error, one line for all of them.
        return DeliveryError(exc.message, retryable=False, quiet=True)
    if isinstance(exc, Forbidden | BadRequest):  # BadRequest is a NetworkError: test it first
        return DeliveryError(f"{what}: {exc.message}", retryable=False)
    if isinstance(exc, NetworkError):
        return DeliveryError(f"{what}: {exc.message}")
    return DeliveryError(f"{what}: {exc.message}")
