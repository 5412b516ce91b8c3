"""Readiness: the database answers, each platform is connected, jobs run, the outbox moves.

Each check gives ``(ok, reason)``; ``/readyz`` answers 200 only when all are ok, and its JSON
names every check with its reason, so a probe's log says what is wrong.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.engine.models import OutboxBacklog

if TYPE_CHECKING:
    from bot.app import App

DATABASE_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Readiness:
    checks: list[Check]

    @property
    def ready(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "checks": {c.name: {"ok": c.ok, "reason": c.reason} for c in self.checks},
        }


async def read_backlog(app: App) -> list[OutboxBacklog]:
    """The outbox per platform, from the database (raises if it does not answer in time)."""
    async with asyncio.timeout(DATABASE_TIMEOUT):
        return await app.db.read(lambda repo: repo.outbox_backlog())


def _outbox_check(app: App, backlog: list[OutboxBacklog], now: int) -> Check:
    limit = app.settings.http.outbox_stuck_seconds
    ours = [b for b in backlog if b.platform in app.platforms and b.oldest_due_at is not None]
    overdue = max((now - b.oldest_due_at for b in ours), default=0)  # type: ignore[operator]
    if overdue > limit:
        worst = max(ours, key=lambda b: now - b.oldest_due_at)  # type: ignore[operator]
        return Check(
            "outbox",
            False,
            f"{worst.platform}: an item has been due for {overdue}s (limit {limit}s)",
        )
    waiting = sum(b.waiting for b in ours)
    return Check("outbox", True, f"{waiting} waiting")


async def readiness(app: App) -> Readiness:
    checks: list[Check] = []
    now = app.clock.now()
    try:
        backlog = await read_backlog(app)
    except TimeoutError:
        checks.append(Check("database", False, f"no answer within {DATABASE_TIMEOUT:g}s"))
        backlog = None
    except Exception as exc:
        checks.append(Check("database", False, f"{type(exc).__name__}: {_first_line(exc)}"))
        backlog = None
    else:
        checks.append(Check("database", True, "reachable"))
    for name in app.platforms:
        ok, reason = app.supervisor.connected(name)
        checks.append(Check(f"platform:{name}", ok, reason))
    scheduler = app.scheduler
    running = scheduler is not None and scheduler.running
    checks.append(Check("scheduler", running, "running" if running else "not running"))
    if backlog is not None:
        checks.append(_outbox_check(app, backlog, now))
    else:
        checks.append(Check("outbox", False, "unknown: the database did not answer"))
    return Readiness(checks)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""
