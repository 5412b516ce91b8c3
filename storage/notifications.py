"""Cache invalidation across processes: PostgreSQL LISTEN/NOTIFY.

A transaction that changes a cached community (``/link-program`` moves it to another program)
sends ``NOTIFY referral_bot_community '<platform>:<external id>'``; the server delivers it to
every listening process when, and only if, that transaction commits. Each process listens on a
connection of its own and forgets the named community, so its next event reads it again. If
the listening connection drops, notices may have been missed: the whole cache is forgotten and
the listener reconnects. One process on SQLite has nothing to listen to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from bot.engine.tasks import cancel_and_wait
from storage.repository import COMMUNITY_CHANNEL

log = logging.getLogger(__name__)


class CommunityChanges:
    def __init__(
        self,
        url: str,
        forget: Callable[[tuple[str, str]], None],
        forget_all: Callable[[], None],
        check_seconds: float = 5.0,
    ) -> None:
        self.forget = forget
        self.forget_all = forget_all
        self.check_seconds = check_seconds
        self.enabled = make_url(url).get_backend_name() == "postgresql"
        self._engine = (
            create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
            if self.enabled
            else None
        )
        self._conn: AsyncConnection | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        if not self.enabled or self._task is not None:
            return
        await self._listen()
        self._task = asyncio.create_task(self._watch(), name="community-changes")

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        platform, _, external_id = payload.partition(":")
        self.forget((platform, external_id))
        log.info("event=cache.community_changed platform=%s community=%s", platform, external_id)

    async def _listen(self) -> None:
        assert self._engine is not None
        try:
            self._conn = await self._engine.connect()
            raw = await self._conn.get_raw_connection()
            await raw.driver_connection.add_listener(COMMUNITY_CHANNEL, self._notified)
        except Exception as exc:
            log.warning("event=cache.listen_failed error=%s", type(exc).__name__)
            await self._drop()

    async def _watch(self) -> None:
        """Keep listening; a lost connection may have missed notices: forget everything."""
        while True:
            await asyncio.sleep(self.check_seconds)
            try:
                if self._conn is None:
                    raise ConnectionError("not listening")
                raw = await self._conn.get_raw_connection()
                if raw.driver_connection.is_closed():
                    raise ConnectionError("closed")
            except Exception:
                self.forget_all()
                await self._drop()
                await self._listen()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:
                pass

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self._drop()
        if self._engine is not None:
            await self._engine.dispose()
