"""Engines, connection settings and migrations for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from storage.repository import Repository
from storage.writer import Writer

log = logging.getLogger(__name__)
R = TypeVar("R")
MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_engine(url: str, *, writer: bool) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=1 if writer else 4,
        max_overflow=0 if writer else 4,
        connect_args={"timeout": 30},
    )
    begin_sql = "BEGIN IMMEDIATE" if writer else "BEGIN"

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # The writer takes the write lock up front: no deadlock upgrading a read lock later.
        conn.exec_driver_sql(begin_sql)

    return engine


def redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


class StorageError(Exception):
    """The database cannot be used as configured; the message says why and what to do."""


class _ProcessLock:
    """SQLite serves one bot process: a second one is refused clearly, not left to race.

    An exclusive ``flock`` on ``<database>.lock``, held while the database is open; the
    kernel frees it when the process ends, however it ends.
    """

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StorageError(
                f"another referral-bot process is using {self.path.with_suffix('')}: a SQLite "
                "database serves one process; stop the other one, or use PostgreSQL "
                "(database.url) to run several processes"
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor frees the lock
            self._fd = None


class Database:
    """The one storage API: a group-commit writer for changes, pooled readers for queries."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            database = parsed.database or ""
            if database in ("", ":memory:"):
                raise ValueError(
                    "database.url must name a SQLite file, e.g. sqlite+aiosqlite:///data/bot.db"
                )
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.path: Path | None = Path(database)
            self._lock: _ProcessLock | None = _ProcessLock(Path(database))
            self.write_engine = _sqlite_engine(url, writer=True)
            self.read_engine = _sqlite_engine(url, writer=False)
        elif self.dialect == "postgresql":
            self.path = None
            self._lock = None
            self.write_engine = create_async_engine(url, pool_size=2, max_overflow=2)
            self.read_engine = create_async_engine(url, pool_size=5, max_overflow=5)
        else:
            raise ValueError(
                f"database.url: unsupported database {self.dialect!r}; use sqlite or postgresql"
            )
        self.writer = Writer(self.write_engine, Repository)

    async def open(self, *, migrate: bool = True) -> None:
        if self._lock is not None:
            self._lock.acquire()
        try:
            if self.path is not None:
                self._check_writable(self.path)
            if migrate:
                await self.migrate()
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise
        self.writer.start()
        log.info("event=storage.opened url=%s", redact(self.url))

    async def migrate(self) -> None:
        engine = create_async_engine(self.url, poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_upgrade)
        finally:
            await engine.dispose()

    async def read(self, fn: Callable[[Repository], Awaitable[R]]) -> R:
        async with self.read_engine.connect() as conn, conn.begin():
            return await fn(Repository(conn))

    async def write(self, fn: Callable[[Repository], Awaitable[R]]) -> R:
        return await self.writer.run(fn)

    async def submit(
        self, op: Callable[[Repository, list[Any]], Awaitable[list[Any]]], item: Any
    ) -> Any:
        return await self.writer.submit(op, item)

    @staticmethod
    def _check_writable(path: Path) -> None:
        """A read-only file or folder is a clear sentence at start, not a traceback later."""
        for target in (path, path.parent):
            if target.exists() and not os.access(target, os.W_OK):
                raise StorageError(
                    f"the database {path} is read-only here ({target} is not writable): "
                    "give the bot's user write access to the file and its folder"
                )

    async def close(self) -> None:
        try:
            await self.writer.close()
            await self.write_engine.dispose()
            await self.read_engine.dispose()
        finally:
            if self._lock is not None:
                self._lock.release()


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _upgrade(sync_conn: Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")
