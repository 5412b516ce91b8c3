"""One leader among the processes sharing a database, for the jobs that must run once.

PostgreSQL: the leader holds a session advisory lock on a connection of its own. When the
leader dies (even by SIGKILL) its connection closes and the server frees the lock; another
process takes it at its next try, every ``check_seconds``. A leader whose connection fails
stops leading at once, before anyone else can take over. SQLite serves one process (the
database refuses a second one), so that process is always the leader.
"""

from __future__ import annotations

import asyncio
import logging

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from bot.engine.tasks import cancel_and_wait

log = logging.getLogger(__name__)
# The advisory lock's key: any fixed 64-bit number, the same in every process of one database.
LOCK_KEY = 0x7265_6672_6C65_6164  # "refrlead"


class Leadership:
    def __init__(self, url: str, check_seconds: float = 5.0) -> None:
        self.url = url
        self.check_seconds = check_seconds
        self.single = make_url(url).get_backend_name() != "postgresql"
        self.is_leader = self.single
        self._conn: AsyncConnection | None = None
        self._engine = (
            None
            if self.single
            else create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        )
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        if self.single or self._task is not None:
            return
        await self.check()
        self._task = asyncio.create_task(self._loop(), name="leadership")

    async def check(self) -> bool:
        """Try to become (or stay) the leader; returns whether this process leads."""
        assert self._engine is not None
        try:
            if self._conn is None:
                self._conn = await self._engine.connect()
            if self.is_leader:
                await self._conn.execute(sa.text("SELECT 1"))  # still connected, still holding
            else:
                got = await self._conn.scalar(
                    sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}
                )
                if got:
                    self.is_leader = True
                    log.info("event=leader.acquired")
        except Exception as exc:  # the connection is gone: so is the lock
            if self.is_leader:
                log.warning("event=leader.lost error=%s", type(exc).__name__)
            self.is_leader = False
            await self._drop()
        return self.is_leader

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.check_seconds)
            await self.check()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:
                pass

    async def stop(self) -> None:
        """Hand over at once: close the connection, which frees the lock."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self.is_leader and not self.single:
            log.info("event=leader.released")
        self.is_leader = self.single
        await self._drop()
        if self._engine is not None:
            await self._engine.dispose()
