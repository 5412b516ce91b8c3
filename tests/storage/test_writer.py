"""The group-commit writer: many callers, few transactions, and no bad item takes others down."""

import asyncio

import pytest
import sqlalchemy as sa

from storage.database import Database
from storage.tables import programs


async def insert_program(repo, name):
    if name == "boom":
        raise ValueError("this one fails")
    return await repo.create_program(name, {}, 0)


@pytest.fixture
async def db(db_url):
    database = Database(db_url)
    await database.open(migrate=False)
    yield database
    await database.close()


async def test_concurrent_callers_share_transactions(db):
    ids = await asyncio.gather(
        *(db.write(lambda r, i=i: insert_program(r, f"p{i}")) for i in range(200))
    )
    assert len(set(ids)) == 200
    assert db.writer.transactions < 20  # 200 callers, a handful of commits


async def test_a_failing_item_is_isolated_and_writes_nothing(db):
    before = db.writer.transactions
    names = ["a", "b", "boom", "c"]
    results = await asyncio.gather(
        *(db.write(lambda r, n=n: insert_program(r, n)) for n in names), return_exceptions=True
    )
    assert isinstance(results[2], ValueError)
    assert all(isinstance(r, int) for i, r in enumerate(results) if i != 2)
    stored = await db.read(lambda r: r.conn.execute(sa.select(programs.c.name)))
    assert sorted(row[0] for row in stored) == ["a", "b", "c"]
    assert db.writer.transactions - before == 1  # undone in a savepoint, not replayed


async def test_writes_after_close_are_refused(db_url):
    database = Database(db_url)
    await database.open(migrate=False)
    await database.close()
    with pytest.raises(RuntimeError, match="not running"):
        await database.write(lambda r: insert_program(r, "late"))
