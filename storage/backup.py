"""SQLite backup and restore, and the lock that says a bot is running on a database file.

``backup_sqlite`` uses the online backup API in one step: one read transaction, so the copy is
a consistent snapshot of every committed transaction at that moment, and in WAL mode the bot's
writer is never blocked meanwhile (a step-wise copy would start over after every write of the
bot and might never finish under load).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from pathlib import Path

from sqlalchemy.engine import make_url


def backup_sqlite(source: Path, target: Path) -> int:
    """Copy ``source`` to ``target``; returns the number of pages copied."""
    if not source.is_file():
        raise FileNotFoundError(f"no database file at {source}")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        raise FileExistsError(f"{target} exists; choose a new file name")
    _copy(source, target)
    dst = sqlite3.connect(target)
    try:
        return int(dst.execute("PRAGMA page_count").fetchone()[0])
    finally:
        dst.close()


def _copy(source: Path, target: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst, pages=-1)  # one step: a snapshot, never restarted by a concurrent write
        dst.execute("PRAGMA journal_mode=WAL")
    finally:
        dst.close()
        src.close()


def check_backup(source: Path) -> None:
    """Raise ValueError unless ``source`` is a sound SQLite file with this bot's schema."""
    if not source.is_file():
        raise FileNotFoundError(f"no backup file at {source}")
    try:
        conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{source} is not a SQLite database ({exc})") from None
    if verdict != "ok":
        raise ValueError(f"{source} is damaged (quick_check: {verdict})")
    if "alembic_version" not in tables:
        raise ValueError(f"{source} is not a referral-bot database (no alembic_version table)")


def restore_sqlite(source: Path, target: Path) -> Path | None:
    """Put a copy of ``source`` in place of ``target``; returns where the old file was kept.

    The copy is written next to the target first and moved into place with one rename, so a
    crash leaves either the old database or the restored one, never half of each. The old
    database is checkpointed (its -wal folded in) and kept beside it as ``.before-restore-…``.
    Its -wal and -shm files are removed before the rename: left next to the restored file,
    SQLite would replay the old database's log into it.
    """
    check_backup(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(target.name + ".restoring")
    staging.unlink(missing_ok=True)
    _copy(source, staging)
    _fsync(staging)
    kept: Path | None = None
    if target.exists():
        conn = sqlite3.connect(target)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        kept = target.with_name(f"{target.name}.before-restore-{time.strftime('%Y%m%d%H%M%S')}")
        os.replace(target, kept)
    for suffix in ("-wal", "-shm"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)
    os.replace(staging, target)
    _fsync(target.parent)
    return kept


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RunLock:
    """An exclusive lock file next to a SQLite database, held while ``run`` serves it.

    The operating system drops the lock when the process ends, however it ends, so a crash
    never leaves a stale lock behind.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @classmethod
    def for_url(cls, url: str) -> RunLock | None:
        """The lock of a SQLite database; None for PostgreSQL (several processes may share)."""
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite" or not parsed.database:
            return None
        database = Path(parsed.database)
        return cls(database.with_name(database.name + ".lock"))

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def database(self) -> Path:
        return self.path.with_name(self.path.name.removesuffix(".lock"))

    def held_message(self) -> str:
        try:
            pid = self.path.read_text().strip()
        except OSError:
            pid = ""
        database = self.path.with_name(self.path.name.removesuffix(".lock"))
        who = f" (pid {pid})" if pid else ""
        return f"a bot is running on {database}{who}"
