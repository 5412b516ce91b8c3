"""The neutral platform protocol every adapter implements."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from bot.engine.context import Capabilities
from bot.engine.models import Community, OutboxItem

if TYPE_CHECKING:
    from bot.app import App


class DeliveryError(Exception):
    """The platform did not accept an outbox item.

    ``retryable`` False means retrying cannot help (unknown channel, user blocks the bot);
    ``retry_after`` is the platform's own wait (a 429), in seconds.
    ``quiet`` marks an expected refusal (a member who never started the bot, or blocked it):
    the item is set aside as "unreachable", counted, and not logged as a warning.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
        counts_as_attempt: bool = True,
        rate_limited: bool = False,
        quiet: bool = False,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        # False for pacing ("not now, in 2 s"): waiting for a rate limit is not a failure.
        self.counts_as_attempt = counts_as_attempt
        # True when the platform itself refused with a rate limit (HTTP 429), for the metrics.
        self.rate_limited = rate_limited
        self.quiet = quiet


class Platform(Protocol):
    name: str
    capabilities: Capabilities

    async def start(self, app: App) -> None:
        """Connect and begin handing events to ``app.engine``."""
        ...

    async def stop(self) -> None: ...

    async def deliver(self, item: OutboxItem) -> None:
        """Send one queued message or role change; raise DeliveryError if it was not accepted.

        Must be idempotent per ``item.dedupe_key``: a redelivery after a crash is harmless.
        """
        ...

    async def create_referral_link(self, community: Community, code: str) -> str:
        """A shareable link that attributes joins to ``code`` (a personal invite on Discord...)."""
        ...


class RevokesLinks(Protocol):
    """Optional: a platform that can retire a personal link it made (``/invite new``).

    Discord deletes the old invite, Telegram revokes the chat invite link. Without this method
    the outbox treats a ``revoke_link`` item as done: the link's code no longer credits.
    Raise DeliveryError like ``deliver``; a link that is already gone is success.
    """

    async def revoke_referral_link(self, community_id: str, url: str) -> None: ...


def lane_of(platform: Platform, item: OutboxItem) -> str:
    """Items in one lane are delivered in order; lanes are delivered in parallel.

    A platform may define ``lane(item) -> str`` (Telegram: the target chat, whose own rate
    limit is the real ceiling); without it all of a platform's items share one lane.
    """
    lane = getattr(platform, "lane", None)
    return f"{item.platform}:{lane(item) if lane is not None else ''}"
