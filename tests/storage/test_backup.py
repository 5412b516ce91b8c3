"""Backup and restore: a copy taken while the bot writes holds every acknowledged row.

SQLite: ``referral-bot backup`` (the online backup API) and ``referral-bot restore``.
PostgreSQL: the documented path, ``pg_dump -Fc`` and ``pg_restore``, on a database of its own.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bot.app import App
from bot.cli import main
from bot.engine.clock import ManualClock
from bot.platforms.console import ConsolePlatform
from storage.backup import RunLock, backup_sqlite
from tests.conftest import _admin, settings_for


async def write_while(app: App, console: ConsolePlatform, snapshot, *, joins: int = 400):
    """Joins keep coming while ``snapshot()`` runs; returns the names acknowledged before it."""
    acked: list[str] = []
    started = asyncio.Event()

    async def writer() -> None:
        for i in range(joins):
            await console.join(f"m{i}")
            acked.append(f"m{i}")
            if len(acked) == joins // 4:
                started.set()

    task = asyncio.create_task(writer())
    await started.wait()
    before = list(acked)
    await snapshot()
    during = len(acked) - len(before)
    await task
    return before, during


async def open_app(url: str) -> tuple[App, ConsolePlatform]:
    console = ConsolePlatform(out=lambda _line: None)
    app = App(settings_for(url), [console], clock=ManualClock())
    await app.open()
    await console.add_community("lounge")
    return app, console


def members(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {r[0] for r in conn.execute("SELECT user_id FROM participants")}
    finally:
        conn.close()


async def test_sqlite_backup_under_writes_restores_every_acknowledged_row(
    sqlite_template: Path, tmp_path: Path, monkeypatch, capsys
):
    live = tmp_path / "data" / "bot.db"
    live.parent.mkdir()
    shutil.copy(sqlite_template, live)
    pad = sqlite3.connect(live)  # some size, so that the copy takes a while
    pad.execute("CREATE TABLE padding (blob BLOB)")
    pad.executemany("INSERT INTO padding VALUES (randomblob(1048576))", [()] * 40)
    pad.commit()
    pad.close()
    url = f"sqlite+aiosqlite:///{live}"
    app, console = await open_app(url)
    copy = tmp_path / "backup.db"
    try:
        before, during = await write_while(
            app, console, lambda: asyncio.to_thread(backup_sqlite, live, copy)
        )
    finally:
        await app.close()
    assert during > 0, "no write happened while the copy was taken"
    assert set(before) <= members(copy)

    monkeypatch.setenv("REFERRAL_BOT_DATABASE__URL", url)
    lock = RunLock.for_url(url)
    assert lock is not None and lock.acquire()  # as `referral-bot run` does
    try:
        assert main(["restore", str(copy)]) == 2
        assert "restore: a bot is running on" in capsys.readouterr().err
        assert (
            await asyncio.to_thread(main, ["run"]) == 2
        )  # and a second bot does not start on the same file
        assert "run: another referral-bot process is using" in capsys.readouterr().err
    finally:
        lock.release()
    assert len(members(live)) == 400  # refused: nothing was touched

    assert main(["restore", str(copy)]) == 0
    assert "restored" in capsys.readouterr().out
    restored = members(live)
    assert set(before) <= restored and len(restored) < 400
    assert [p.name for p in live.parent.glob("bot.db.before-restore-*")]
    app, console = await open_app(url)  # opens and migrates as usual; the bot carries on
    try:
        await console.join("after-restore")
    finally:
        await app.close()
    assert "after-restore" in members(live)


def test_restore_refuses_a_file_that_is_not_a_backup(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("REFERRAL_BOT_DATABASE__URL", f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    junk = tmp_path / "junk.db"
    junk.write_text("not a database")
    assert main(["restore", str(junk)]) == 2
    assert "is not a SQLite database" in capsys.readouterr().err
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).execute("CREATE TABLE t (x)").connection.close()
    assert main(["restore", str(empty)]) == 2
    assert "is not a referral-bot database" in capsys.readouterr().err
    assert not (tmp_path / "bot.db").exists()


@pytest.mark.skipif(shutil.which("pg_dump") is None, reason="pg_dump is not installed")
async def test_postgresql_dump_under_writes_restores_every_acknowledged_row(
    pg_ready: str, tmp_path: Path
):
    base = make_url(pg_ready)
    live_name = f"rb_backup_live_{uuid.uuid4().hex[:8]}"
    copy_name = f"rb_backup_copy_{uuid.uuid4().hex[:8]}"
    await _admin(f'CREATE DATABASE "{live_name}"')
    await _admin(f'CREATE DATABASE "{copy_name}"')
    live = base.set(database=live_name)
    libpq = ["-h", live.host or "127.0.0.1", "-p", str(live.port or 5432), "-U", live.username]
    dump = tmp_path / "live.dump"
    try:
        app, console = await open_app(live.render_as_string(hide_password=False))

        async def snapshot() -> None:
            proc = await asyncio.create_subprocess_exec(
                "pg_dump", *libpq, "-Fc", "-f", str(dump), live_name
            )
            assert await proc.wait() == 0

        try:
            before, _during = await write_while(app, console, snapshot, joins=200)
        finally:
            await app.close()
        proc = await asyncio.create_subprocess_exec(
            "pg_restore", *libpq, "--no-owner", "-d", copy_name, str(dump)
        )
        assert await proc.wait() == 0
        copy_url = base.set(database=copy_name).render_as_string(hide_password=False)
        app, console = await open_app(copy_url)
        try:
            found = await app.db.read(
                lambda repo: repo.participants_by_identity(
                    [(1, "console", name) for name in before]
                )
            )
        finally:
            await app.close()
        assert {key[2] for key in found} == set(before)
    finally:
        dump.unlink(missing_ok=True)
        for name in (live_name, copy_name):
            await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
