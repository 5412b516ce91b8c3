"""What moderators and admins see of joins: the welcome (off, or in its own channel), "who
invited X" with settling an ambiguous join, the join/leave log, and Discord-form usage."""

from __future__ import annotations

import sqlalchemy as sa

from bot.platforms.discord.slash import build_payload
from commands import REGISTRY
from tests.platforms.discord.conftest import World, joins_of
from tests.platforms.discord.test_attribution import personal_invite


async def admin_set(world: World, setting: str, value: str) -> str:
    r = await world.admin.slash(world.general, "referral-admin set", setting=setting, value=value)
    return r.response.content


async def test_welcome_text_off_turns_the_welcome_off(world: World) -> None:
    assert "saved" in (await admin_set(world, "welcome-text", "off")).lower()
    before = len(world.general.history())
    world.join(None, "bob")
    await world.window()
    await world.deliver()
    assert len(world.general.history()) == before  # no welcome, not a welcome saying "off"


async def test_the_welcome_goes_to_the_chosen_channel(world: World) -> None:
    lobby = world.guild.create_text_channel("lobby")
    await world.env.settle()
    assert "saved" in (await admin_set(world, "welcome-channel", "#lobby")).lower()
    bob = world.join(None, "bob")
    await world.window()
    await world.deliver()
    assert f"<@{bob.id}>" in lobby.last_message.content


async def test_errors_and_help_show_the_discord_form(world: World) -> None:
    await world.admin.slash(
        world.general, "referral-admin tier-add", name="Gold", threshold=2, kind="points", value="5"
    )
    again = await world.admin.slash(
        world.general, "referral-admin tier-add", name="Gold", threshold=3, kind="points", value="5"
    )
    assert "/referral-admin tier-edit" in again.response.content
    missing = await world.admin.slash(world.general, "referral-admin set", setting="min-days")
    assert "/referral-admin set" in missing.response.content
    program = (await world.admin.slash(world.general, "referral-admin program")).response.content
    assert "/referral-admin set" in program


def test_no_option_description_merely_repeats_its_name() -> None:
    from bot.platforms.discord.slash import discord_catalog
    from config.i18n import Catalog

    payload = build_payload(discord_catalog(Catalog()), REGISTRY.all())
    repeated = []

    def walk(options: list, path: str) -> None:
        for o in options:
            if o["type"] == 1:
                walk(o.get("options") or [], f"{path} {o['name']}")
            elif o["description"].strip().lower() == o["name"]:
                repeated.append(f"{path} {o['name']}")

    for command in payload:
        walk(command.get("options") or [], command["name"])
    assert repeated == []


async def ambiguous_join(world: World):
    owners = [await world.member(n) for n in ("alice", "bert")]
    invites = [await personal_invite(world, o) for o in owners]
    x = world.join(invites[0][0], "xavier")
    world.join(invites[1][0], "yann")  # same window: nobody can tell who used which
    await world.window()
    assert (await joins_of(world))[str(x.id)]["source"] == "ambiguous"
    return owners, invites, x


async def test_who_invited_shows_the_newcomers_side_and_a_moderator_settles_it(
    world: World,
) -> None:
    (alice, _bert), invites, x = await ambiguous_join(world)
    mod = await world.member("mod", roles=[world.mod_role])
    seen = (await mod.slash(world.general, "referral-mod who-invited", member=x)).response.content
    assert "xavier" in seen and "Nobody is credited" in seen and "alice" in seen and "bert" in seen

    wrong = await mod.slash(world.general, "referral-mod settle-join", member=x, code="ZZZZ-ZZZZ")
    assert "not one of this join's candidates" in wrong.response.content
    assert (await joins_of(world))[str(x.id)]["referrer"] is None  # nothing written

    code = invites[0][1]
    done = await mod.slash(world.general, "referral-mod settle-join", member=x, code=code)
    assert "credited to alice" in done.response.content
    joined = (await joins_of(world))[str(x.id)]
    assert (joined["referrer"], joined["status"]) == (str(alice.id), "pending")
    twice = await mod.slash(world.general, "referral-mod settle-join", member=x, code=code)
    assert "already" in twice.response.content

    async def audit(repo):
        rows = await repo.conn.execute(
            sa.text("SELECT actor, action FROM audit_log WHERE action = 'join.settled'")
        )
        return [tuple(r) for r in rows]

    assert await world.app.db.read(audit) == [(f"mod ({mod.id})", "join.settled")]
    seen = (await mod.slash(world.general, "referral-mod who-invited", member=x)).response.content
    assert "Referred by alice" in seen and "pending" in seen


async def test_only_an_ambiguous_join_can_be_settled(world: World) -> None:
    alice = await world.member("alice")
    _, code = await personal_invite(world, alice)
    plain = world.join(None, "plain")
    await world.window()
    mod = await world.member("mod", roles=[world.mod_role])
    r = await mod.slash(world.general, "referral-mod settle-join", member=plain, code=code)
    assert "was not ambiguous" in r.response.content


async def test_the_join_and_leave_log_says_who_and_why(world: World) -> None:
    log = world.guild.create_text_channel("join-log")
    await world.env.settle()
    assert "saved" in (await admin_set(world, "log-channel", "#join-log")).lower()
    alice = await world.member("alice")
    invite, _ = await personal_invite(world, alice)
    bob = world.join(invite, "bob")
    await world.window()
    carl = world.join(None, "carl")
    await world.window()
    world.guild.remove_member(bob)
    await world.env.settle()
    await world.deliver()
    lines = [m.content for m in log.history()]
    assert any(f"bob ({bob.id})" in x and "alice's invite" in x for x in lines)
    assert any(f"carl ({carl.id})" in x and "saw no invite use" in x for x in lines)
    assert any(
        f"bob ({bob.id}) left" in x and "pending referral for alice ended" in x for x in lines
    )
    assert all(not m.mentions for m in log.history())  # a log pings nobody
