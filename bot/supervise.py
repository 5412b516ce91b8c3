"""Start-up that survives the world: platforms retried with backoff, the database waited for.

A platform that cannot connect (DNS, refused, 5xx, a timeout) never takes the others down: its
first attempt runs alongside the others', and if it fails it is retried in the background with
exponential backoff, one log line per attempt (``event=platform.retry``). A platform that says
retrying cannot help (a rejected token) raises ``PlatformRejected``: one sentence naming the
platform and the fix, never a traceback and never the token.

A platform takes part by defining ``start_failure(exc) -> StartFailure``; one without it (the
console) is started directly and its errors propagate as before.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.engine import observe
from bot.platforms.base import Platform
from config.settings import ConfigError

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StartFailure:
    """What a platform says about an exception raised by its ``start``."""

    fatal: bool  # retrying cannot help (the token was rejected): stop with exit code 2
    reason: str  # one line, without the token
    fix: str = ""  # for a fatal failure: what the operator should do


class PlatformRejected(Exception):
    """A platform refused us for good (a rejected token); the message is the operator's line."""

    def __init__(self, platform: str, failure: StartFailure) -> None:
        self.platform = platform
        self.failure = failure
        super().__init__(f"{platform}: {failure.reason}. {failure.fix}".strip())


@dataclass(slots=True)
class PlatformState:
    connected: bool = False
    attempts: int = 0
    reason: str = "starting"


def _one_line(text: str, secret: str | None) -> str:
    line = " ".join(str(text).split())
    if secret:
        line = line.replace(secret, "***")
    return line[:300]


def classify(platform: Platform, exc: BaseException) -> StartFailure:
    hook = getattr(platform, "start_failure", None)
    if isinstance(exc, TimeoutError):
        return StartFailure(False, "timed out")
    if hook is not None:
        return hook(exc)
    return StartFailure(False, f"{type(exc).__name__}: {exc}")


class PlatformSupervisor:
    """Starts every platform; retries the ones that failed for a reason that may pass."""

    def __init__(
        self,
        app: App,
        *,
        start_timeout: float = 60.0,
        base_delay: float = 2.0,
        max_delay: float = 300.0,
    ) -> None:
        self.app = app
        self.start_timeout = start_timeout
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.states: dict[str, PlatformState] = {}
        self.fatal: PlatformRejected | None = None
        self.on_fatal: list[Callable[[PlatformRejected], None]] = []
        self._tasks: dict[str, asyncio.Task] = {}

    def connected(self, name: str) -> tuple[bool, str]:
        """(connected, reason) for readiness: started by us and, if it can tell, still up."""
        state = self.states.get(name)
        if state is None:
            return False, "not started"
        if not state.connected:
            return False, state.reason
        probe = getattr(self.app.platforms[name], "is_connected", None)
        if probe is not None and not probe():
            return False, "disconnected"
        return True, "connected"

    async def start_all(self) -> None:
        """First attempts together; raises PlatformRejected if any platform refuses us."""
        supervised = []
        for platform in self.app.platforms.values():
            if getattr(platform, "start_failure", None) is None:
                await platform.start(self.app)
                self._mark(platform.name, PlatformState(connected=True, reason="connected"))
            else:
                supervised.append(platform)
        outcomes = await asyncio.gather(*(self._attempt(p) for p in supervised))
        for platform, failure in zip(supervised, outcomes, strict=True):
            if failure is not None and failure.fatal:
                self.fatal = PlatformRejected(platform.name, failure)
                raise self.fatal
        for platform, failure in zip(supervised, outcomes, strict=True):
            if failure is not None:
                self._tasks[platform.name] = asyncio.create_task(
                    self._retry(platform), name=f"start-{platform.name}"
                )

    async def stop(self) -> None:
        tasks, self._tasks = list(self._tasks.values()), {}
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass

    def _mark(self, name: str, state: PlatformState) -> None:
        self.states[name] = state
        observe.emit("platform.connected", 1.0 if state.connected else 0.0, platform=name)

    async def _attempt(self, platform: Platform) -> StartFailure | None:
        state = self.states.get(platform.name) or PlatformState()
        state.attempts += 1
        started = time.monotonic()
        try:
            await asyncio.wait_for(platform.start(self.app), self.start_timeout)
        except asyncio.CancelledError:
            raise
        except ConfigError:  # the operator must change the configuration: never retried
            await self._cleanup(platform)
            raise
        except Exception as exc:
            failure = classify(platform, exc)
            if failure.reason == "timed out":
                failure = StartFailure(False, f"timed out after {self.start_timeout:g}s")
            secret = getattr(platform, "token", None)
            failure = StartFailure(
                failure.fatal, _one_line(failure.reason, secret), _one_line(failure.fix, secret)
            )
            state.connected, state.reason = False, failure.reason
            self._mark(platform.name, state)
            await self._cleanup(platform)
            return failure
        state.connected, state.reason = True, "connected"
        self._mark(platform.name, state)
        if state.attempts > 1:
            log.info(
                "event=platform.connected platform=%s attempts=%d seconds=%.1f",
                platform.name,
                state.attempts,
                time.monotonic() - started,
            )
        return None

    async def _cleanup(self, platform: Platform) -> None:
        """Undo a half-done start so that the next attempt begins from nothing."""
        try:
            await platform.stop()
        except Exception as exc:
            log.warning(
                "event=platform.cleanup_failed platform=%s error=%s",
                platform.name,
                _one_line(f"{type(exc).__name__}: {exc}", getattr(platform, "token", None)),
            )

    def delay(self, attempts: int) -> float:
        """Exponential backoff with ±10 % jitter, capped at max_delay."""
        wait = min(self.max_delay, self.base_delay * 2 ** max(0, attempts - 1))
        return wait * random.uniform(0.9, 1.1)

    async def _retry(self, platform: Platform) -> None:
        state = self.states[platform.name]
        while True:
            wait = self.delay(state.attempts)
            log.warning(
                "event=platform.retry platform=%s attempt=%d in=%.0fs error=%r",
                platform.name,
                state.attempts,
                wait,
                state.reason,
            )
            await asyncio.sleep(wait)
            failure = await self._attempt(platform)
            if failure is None:
                return
            if failure.fatal:
                self.fatal = PlatformRejected(platform.name, failure)
                log.error(
                    "event=platform.rejected platform=%s reason=%r",
                    platform.name,
                    failure.reason,
                )
                for callback in self.on_fatal:
                    callback(self.fatal)
                return


async def wait_for_database(url: str, seconds: float, *, first_delay: float = 1.0) -> None:
    """Until the database answers ``SELECT 1``, or ``seconds`` have passed (then raise)."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from storage.database import redact

    if make_url(url).get_backend_name() == "sqlite":
        return  # a local file: nothing to wait for (its folder is created when it is opened)
    deadline = time.monotonic() + seconds
    attempt, delay = 0, first_delay
    while True:
        attempt += 1
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with asyncio.timeout(max(1.0, min(10.0, seconds))):
                async with engine.connect() as conn:
                    await conn.execute(sa.text("SELECT 1"))
            if attempt > 1:
                log.info("event=database.reachable attempts=%d", attempt)
            return
        except Exception as exc:
            reason = _one_line(f"{type(exc).__name__}: {exc}", None)
            left = deadline - time.monotonic()
            if left <= 0:
                raise DatabaseUnreachable(redact(url), seconds, reason) from None
            wait = min(delay, left)
            log.warning("event=database.retry attempt=%d in=%.0fs error=%r", attempt, wait, reason)
            await asyncio.sleep(wait)
            delay = min(delay * 2, 30.0)
        finally:
            await engine.dispose()


class DatabaseUnreachable(Exception):
    def __init__(self, url: str, seconds: float, reason: str) -> None:
        self.url, self.seconds, self.reason = url, seconds, reason
        super().__init__(f"database at {url} unreachable after {seconds:g}s: {reason}")
