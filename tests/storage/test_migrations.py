"""The Alembic revisions build the schema storage/tables.py declares, and 0003 upgrades data."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from storage.database import alembic_config
from storage.tables import metadata


async def test_the_migrated_schema_is_the_declared_one(db_url: str):
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), metadata
                )
            )
    finally:
        await engine.dispose()
    assert diff == []


def test_0003_keeps_applied_roles_and_announced_rewards_quiet(tmp_path):
    """Grants made before 0003: an applied role is at its first application, and a reward
    already available is not announced as 'ready' again after the upgrade."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
        conn.execute(sa.text("INSERT INTO programs (id, name, created_at) VALUES (1, 'p', 0)"))
        conn.execute(
            sa.text(
                "INSERT INTO participants (id, program_id, platform, user_id, display_name,"
                " created_at) VALUES (1, 1, 'console', 'alice', 'alice', 0)"
            )
        )
        for gid, kind, status, available_at in (
            (1, "role", "redeemed", 100),
            (2, "points", "available", 100),
            (3, "points", "available", 4_000_000_000),  # still in its holding period
        ):
            conn.execute(
                sa.text(
                    "INSERT INTO grants (id, program_id, participant_id, side, label, kind,"
                    " value, status, created_at, available_at, dedupe_key) VALUES"
                    " (:id, 1, 1, 'referrer', 'T', :kind, '5', :status, 50, :at, :key)"
                ),
                {"id": gid, "kind": kind, "status": status, "at": available_at, "key": f"k{gid}"},
            )
        command.upgrade(cfg, "head")
        rows = conn.execute(
            sa.text("SELECT id, epoch, ready_told_at FROM grants ORDER BY id")
        ).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [(1, 1, 50), (2, 0, 50), (3, 0, None)]
