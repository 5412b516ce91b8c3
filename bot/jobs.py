"""Scheduled jobs (APScheduler 3.11). Each is a thin, idempotent call into the engine.

The same list runs from the scheduler in production and from a scenario's ``advance``, so
"what is due" is always a query, never a timer's memory: after downtime, jobs catch up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bot.engine import observe

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    interval_setting: str  # a key of [jobs] in the settings
    run: Callable[[App], Awaitable[object]]
    # Run by the leader only when several processes share a database (storage/leader.py).
    # Each of these is also safe on every process (claimed rows, compare-and-set transitions,
    # UNIQUE dedupe keys); the leader keeps them from doing the same work twice.
    singleton: bool = False


async def _flush(app: App) -> object:
    return await app.engine.flush_activity()


async def _sweep(app: App) -> object:
    return await app.engine.run_sweep()


async def _deadlines(app: App) -> object:
    return await app.engine.run_review_deadlines()


async def _announce(app: App) -> object:
    return await app.engine.run_announcements()


async def _digest(app: App) -> object:
    return await app.engine.run_digests()


async def _outbox(app: App) -> object:
    return await app.outbox.drain()


# In dependency order: counts before the sweep, grants before announcements, all before delivery.
JOBS = (
    Job("activity_flush", "activity_flush_seconds", _flush),
    Job("conversion_sweep", "sweep_seconds", _sweep, singleton=True),
    Job("review_deadlines", "sweep_seconds", _deadlines, singleton=True),
    Job("tier_announcements", "announce_seconds", _announce, singleton=True),
    Job("leaderboard_digest", "digest_check_seconds", _digest, singleton=True),
    Job("outbox_delivery", "outbox_poll_seconds", _outbox),
)


async def run_job(app: App, job: Job) -> None:
    started = time.perf_counter()
    try:
        result = await job.run(app)
        log.debug("event=job.done job=%s result=%s", job.name, result)
    except Exception:
        log.exception("event=job.failed job=%s", job.name)
        observe.emit("job", time.perf_counter() - started, job=job.name, outcome="failed")
    else:
        observe.emit("job", time.perf_counter() - started, job=job.name, outcome="ok")


async def run_all(app: App) -> None:
    """Run every job once, in order (what a scenario's ``advance`` does after moving the clock)."""
    for job in JOBS:
        await run_job(app, job)


async def run_scheduled(app: App, job: Job) -> None:
    """What the scheduler runs: a singleton job only on the leader (every process flushes its
    own message counts and delivers its own outbox items)."""
    if job.singleton and not app.leadership.is_leader:
        log.debug("event=job.skipped job=%s reason=not-leader", job.name)
        return
    await run_job(app, job)


def schedule(scheduler: AsyncIOScheduler, app: App) -> None:
    """Every job but delivery: a running app has its own outbox worker, woken by each commit."""
    for job in JOBS:
        if job.name == "outbox_delivery":
            continue
        seconds = getattr(app.settings.jobs, job.interval_setting)
        scheduler.add_job(
            run_scheduled,
            IntervalTrigger(seconds=max(1, seconds)),
            args=(app, job),
            id=job.name,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
            replace_existing=True,
        )
