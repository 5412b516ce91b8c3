"""discord.members_search: Discord's own join data settles an ambiguous join later, and only
when it names one of that join's candidates."""

from __future__ import annotations

from dataclasses import replace

import sqlalchemy as sa

import tests.fakes.discord_members_search  # noqa: F401  (registers the endpoint in SimCord)
from tests.platforms.discord.conftest import World, joins_of
from tests.platforms.discord.test_attribution import personal_invite


async def searched(world: World) -> int:
    return len([r for r in world.env.http_requests if r.path.endswith("/members-search")])


async def ambiguous_pair(world: World):
    alice, bert = await world.member("alice"), await world.member("bert")
    (a, _), (b, _) = await personal_invite(world, alice), await personal_invite(world, bert)
    x, y = world.join(a, "xavier"), world.join(b, "yann")  # one window: ambiguous
    await world.window()
    joined = await joins_of(world)
    assert joined[str(x.id)]["source"] == joined[str(y.id)]["source"] == "ambiguous"
    return alice, bert, x, y


async def test_join_data_settles_an_ambiguous_window_when_turned_on(
    world_unopened: World,
) -> None:
    world = world_unopened
    world.settings = replace(
        world.settings, discord=replace(world.settings.discord, members_search=True)
    )
    world.platform, world.app = world._make()
    await world.connect()
    try:
        await world.build()
        alice, bert, x, y = await ambiguous_pair(world)
        await world.env.advance_time(40)  # Discord lists new members after ~20 s
        await world.env.settle()
        joined = await joins_of(world)
        assert joined[str(x.id)]["referrer"] == str(alice.id)
        assert joined[str(y.id)]["referrer"] == str(bert.id)

        async def actors(repo):
            rows = await repo.conn.execute(
                sa.text("SELECT actor FROM audit_log WHERE action = 'join.settled'")
            )
            return [r[0] for r in rows]

        assert await world.app.db.read(actors) == ["members-search (discord)"] * 2
    finally:
        await world.close()


async def test_join_data_is_not_asked_for_by_default(world: World) -> None:
    _alice, _bert, x, _y = await ambiguous_pair(world)
    await world.env.advance_time(40)
    await world.env.settle()
    assert await searched(world) == 0
    assert (await joins_of(world))[str(x.id)]["referrer"] is None
