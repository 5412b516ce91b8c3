"""Composition root: settings -> storage -> engine -> platforms -> outbox worker -> scheduler."""

from __future__ import annotations

import logging
from dataclasses import fields
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot import jobs
from bot.delivery import OutboxWorker
from bot.engine.clock import Clock, SystemClock
from bot.engine.context import EngineContext
from bot.engine.program_settings import (
    DETECTORS,
    DM_MODES,
    LANGUAGES,
    RISK_MODES,
    ProgramSettings,
)
from bot.engine.service import ReferralEngine
from bot.platforms.base import Platform
from bot.supervise import PlatformSupervisor
from config.i18n import Catalog
from config.settings import ConfigError, Settings
from storage.database import Database
from storage.leader import Leadership
from storage.notifications import CommunityChanges

if TYPE_CHECKING:
    from bot.http import HealthServer

log = logging.getLogger(__name__)


_PROGRAM_LIMITS = {
    "min_days": (0, 365),
    "min_messages": (0, 10_000),
    "conversion_window_days": (1, 365),
    "code_window_days": (0, 90),
    "holding_days": (0, 365),
    "digest_weekday": (0, 6),
    "digest_minute": (0, 24 * 60 - 1),
    "coupon_low_stock": (0, 100_000),
    "young_account_days": (0, 3650),
    "velocity_count": (1, 1000),
    "velocity_minutes": (1, 1440),
    "leave_early_count": (1, 1000),
    "empty_count": (1, 1000),
    "leave_early_share": (1, 100),
    "empty_share": (1, 100),
    "rejoin_days": (1, 365),
    "review_deadline_days": (1, 365),
}
_PROGRAM_CHOICES = {
    "dm_newcomers": DM_MODES,
    "language": LANGUAGES,
    "risk_mode": RISK_MODES,
    "review_deadline_action": ("approve", "reject"),
}


def program_defaults(settings: Settings) -> ProgramSettings:
    """The [program] section as typed, range-checked defaults; errors name the key."""
    base = ProgramSettings()
    known = {f.name for f in fields(ProgramSettings)}
    values: dict[str, object] = {}
    for key, raw in settings.program.items():
        if key not in known:
            raise ConfigError(
                f"program.{key}: unknown setting; allowed: {', '.join(sorted(known))}"
            )
        if key.endswith(("_community_id", "_channel")):
            raise ConfigError(
                f"program.{key}: channels are set in chat by an admin "
                "(/set announce-channel, /set admin-channel, /set moderator-channel)"
            )
        if key in _PROGRAM_LIMITS:
            low, high = _PROGRAM_LIMITS[key]
            if key in ("digest_weekday", "review_deadline_days") and str(raw).lower() in (
                "off",
                "none",
                "",
            ):
                values[key] = None
                continue
            try:
                number = int(raw)  # type: ignore[call-overload]
            except (TypeError, ValueError):
                raise ConfigError(f"program.{key}: expected a whole number, got {raw!r}") from None
            if not low <= number <= high:
                raise ConfigError(f"program.{key}: must be from {low} to {high}, got {number}")
            values[key] = number
        elif key == "detectors_off":
            names = (
                tuple(raw)
                if isinstance(raw, list | tuple)
                else tuple(n.strip() for n in str(raw).split(",") if n.strip())
            )
            unknown = [n for n in names if n not in DETECTORS]
            if unknown:
                raise ConfigError(
                    f"program.detectors_off: unknown detector {unknown[0]!r}; "
                    f"known: {', '.join(DETECTORS)}"
                )
            values[key] = names
        elif key in _PROGRAM_CHOICES:
            if str(raw) not in _PROGRAM_CHOICES[key]:
                allowed = ", ".join(_PROGRAM_CHOICES[key])
                raise ConfigError(f"program.{key}: must be one of {allowed}, got {raw!r}")
            values[key] = str(raw)
        else:
            values[key] = None if raw in ("", None) else str(raw)
    result = base.with_defaults(values)
    if result.min_days > result.conversion_window_days:
        raise ConfigError("program.min_days: must not exceed program.conversion_window_days")
    return result


class App:
    def __init__(
        self, settings: Settings, platforms: list[Platform], clock: Clock | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.catalog = Catalog()
        self.db = Database(settings.database.url)
        self.platforms: dict[str, Platform] = {p.name: p for p in platforms}
        self.ctx = EngineContext(
            clock=self.clock,
            defaults=program_defaults(settings),
            capabilities={p.name: p.capabilities for p in platforms},
            recheck_seconds=settings.jobs.recheck_seconds,
            code_attempt_limit=settings.codes.attempt_limit,
            code_attempt_window=settings.codes.attempt_window_seconds,
            code_lock_seconds=settings.codes.lock_seconds,
            command_budget=settings.flood.command_budget,
            command_window_seconds=settings.flood.command_window_seconds,
            invite_new_per_day=settings.flood.invite_new_per_day,
        )
        self.engine = ReferralEngine(self.db, self.ctx)
        self.outbox = OutboxWorker(self.db, self.platforms, self.clock, settings.outbox)
        self.db.writer.on_outbox.append(self.outbox.wake)
        self.scheduler: AsyncIOScheduler | None = None
        # Platforms that cannot connect are retried in the background (bot/supervise.py).
        self.supervisor = PlatformSupervisor(self)
        self.http: HealthServer | None = None
        self.leadership = Leadership(settings.database.url, settings.jobs.leader_check_seconds)
        self.community_changes = CommunityChanges(
            settings.database.url,
            forget=lambda key: self.ctx.communities.pop(key, None),
            forget_all=self.ctx.communities.clear,
        )

    async def open(self) -> None:
        """Storage and platforms, without background work (scenarios drive time themselves)."""
        await self.db.open()
        await self.supervisor.start_all()

    async def start(self) -> None:
        """Everything, including the scheduler and the outbox worker (``referral-bot run``)."""
        if self.settings.http.listen:  # first, so that /healthz answers while platforms retry
            from bot.http import HealthServer

            self.http = HealthServer(self)
            await self.http.start()
        await self.community_changes.start()  # before events arrive: no change is missed
        await self.open()
        await self.leadership.start()
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        jobs.schedule(self.scheduler, self)
        self.scheduler.start()
        self.outbox.start(self.settings.jobs.outbox_poll_seconds)
        log.info("event=app.started platforms=%s", ",".join(self.platforms))

    async def run_jobs(self) -> None:
        await jobs.run_all(self)

    async def close(self) -> None:
        """A clean stop, in an order that loses nothing acknowledged:

        1. the scheduler stops (no job starts any more);
        2. the platforms stop taking events;
        3. the final flush writes every message counted until then;
        4. the outbox worker and its lanes are cancelled and awaited, and the items it claimed
           but did not send are released (due at once for the next process);
        5. the writer finishes what is queued and the database closes.
        """
        await self.supervisor.stop()
        if self.http is not None:
            await self.http.stop()
            self.http = None
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        await self.leadership.stop()  # another process leads from its next check
        await self.community_changes.stop()
        try:
            for platform in self.platforms.values():
                try:
                    await platform.stop()
                except Exception:
                    log.exception("event=app.platform_stop_failed platform=%s", platform.name)
            await self.engine.flush_activity()
        finally:
            try:
                await self.outbox.stop()
            finally:
                await self.db.close()
