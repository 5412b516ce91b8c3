"""One writer with group commit.

Every write goes through ``Writer.submit(op, item)``. Callers that arrive while a transaction is
being written wait together; the next transaction takes all of them at once. Consecutive items for
the same operation are handed to it as one list, so an operation can do set-based work (one
statement for a thousand joins). After the commit every caller gets its own result.

If a group's transaction fails, each item is retried in a transaction of its own, so one bad item
never takes its neighbours down with it, and nothing of the failing item is written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.engine import observe
from storage.repository import Repository

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

BatchOp = Callable[[Repository, list[Any]], Awaitable[Sequence[Any]]]


@dataclass(slots=True)
class _Job(Generic[T]):
    op: BatchOp
    item: T
    future: asyncio.Future


async def _call_each(repo: Repository, fns: list[Callable[[Repository], Awaitable[Any]]]) -> list:
    return [await fn(repo) for fn in fns]


class Writer:
    def __init__(
        self,
        engine: AsyncEngine,
        make_repo: Callable[[AsyncConnection], Repository],
        max_group: int = 2000,
    ) -> None:
        self._engine = engine
        self._make_repo = make_repo
        self._max_group = max_group
        self._queue: deque[_Job] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        # Called after a commit that queued outbox rows (the delivery worker listens).
        self.on_outbox: list[Callable[[], None]] = []
        self.transactions = 0  # for benchmarks and tests: how many commits served the callers

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="storage-writer")

    async def close(self) -> None:
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def submit(self, op: BatchOp, item: Any) -> Any:
        if self._task is None or self._closing:
            raise RuntimeError("the writer is not running")
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Job(op, item, future))
        self._wakeup.set()
        return await future

    async def run(self, fn: Callable[[Repository], Awaitable[R]]) -> R:
        """Run one function in a write transaction (grouped with whatever else is waiting)."""
        return await self.submit(_call_each, fn)

    async def _loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                group = [
                    self._queue.popleft() for _ in range(min(self._max_group, len(self._queue)))
                ]
                await self._commit_group(group)
            if self._closing:
                return

    async def _commit_group(self, group: list[_Job]) -> None:
        runs: list[list[_Job]] = []
        for job in group:
            if runs and runs[-1][0].op is job.op:
                runs[-1].append(job)
            else:
                runs.append([job])
        started = time.perf_counter()
        try:
            outcomes, hooks = await self._transaction(runs)
        except Exception as exc:  # the commit itself failed (or the connection did)
            if len(group) == 1:
                if not group[0].future.done():
                    group[0].future.set_exception(exc)
                return
            log.warning(
                "event=writer.group_failed size=%d error=%s; retrying one by one",
                len(group),
                type(exc).__name__,
            )
            for job in group:
                await self._commit_group([job])
            return
        self.transactions += 1
        observe.emit("writer.group", time.perf_counter() - started, size=str(len(group)))
        for hook in hooks:
            try:
                hook()
            except Exception:
                log.exception("event=writer.after_commit_failed")
        for job, (ok, value) in zip(group, outcomes, strict=True):
            if job.future.done():
                continue
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)

    async def _transaction(
        self, runs: list[list[_Job]]
    ) -> tuple[list[tuple[bool, Any]], list[Callable]]:
        """One transaction; each run in a savepoint, so a failing item is undone alone."""
        outcomes: list[tuple[bool, Any]] = []
        async with self._engine.begin() as conn:
            repo = self._make_repo(conn)
            for run in runs:
                outcomes.extend(await self._run(conn, repo, run))
        hooks = list(repo.hooks)
        if repo.outbox_added:
            hooks += self.on_outbox
        return outcomes, hooks

    async def _run(
        self, conn: AsyncConnection, repo: Repository, run: list[_Job]
    ) -> list[tuple[bool, Any]]:
        hooks_before = len(repo.hooks)
        try:
            async with conn.begin_nested():
                out = await run[0].op(repo, [job.item for job in run])
                if len(out) != len(run):
                    raise RuntimeError(f"{run[0].op!r} returned {len(out)} results for {len(run)}")
            return [(True, value) for value in out]
        except Exception as exc:
            del repo.hooks[hooks_before:]  # what the failed part meant to do after commit
            if len(run) == 1:
                return [(False, exc)]
        # A batch failed: run its items one by one, each in its own savepoint.
        outcomes: list[tuple[bool, Any]] = []
        for job in run:
            outcomes.extend(await self._run(conn, repo, [job]))
        return outcomes
