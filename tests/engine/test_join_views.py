"""The engine side of issue 9, on SQLite and PostgreSQL: who invited a member and settling an
ambiguous join, the join/leave log, forgotten links, waiting outbox items, late newcomers."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from bot.engine.admin import Actor
from bot.engine.clock import DAY
from bot.engine.errors import UserError
from bot.engine.events import JoinSource, MemberJoined, MemberLeft, UserRef
from storage.tables import outbox
from tests.conftest import Harness
from tests.engine.test_joins import LOUNGE, make_code

MOD = Actor("m1", "mod")


async def test_an_ambiguous_join_is_shown_and_settled_once(harness: Harness) -> None:
    for owner in ("ann", "ben"):
        await harness.console.join(owner)
    ann, ben = await make_code(harness, "ann"), await make_code(harness, "ben")
    await harness.engine.member_joined(
        MemberJoined(LOUNGE, UserRef("x", "xia"), JoinSource.AMBIGUOUS, candidates=(ann, ben))
    )
    story = await harness.engine.who_invited(LOUNGE, "xia")
    assert story.referral is None and {c.owner for c in story.candidates} == {"ann", "ben"}
    with pytest.raises(UserError) as wrong:
        await harness.engine.settle_join(LOUNGE, MOD, "xia", "NOPE-NOPE")
    assert wrong.value.key == "whoinvited.not_a_candidate"
    person, referrer = await harness.engine.settle_join(LOUNGE, MOD, "xia", ben)
    assert (person.display_name, referrer.display_name) == ("xia", "ben")
    story = await harness.engine.who_invited(LOUNGE, "x")
    assert story.referrer is not None and story.referrer.display_name == "ben"
    with pytest.raises(UserError) as twice:
        await harness.engine.settle_join(LOUNGE, MOD, "x", ann)
    assert twice.value.key == "whoinvited.already"


async def test_links_are_forgotten_and_found_for_departed_members(harness: Harness) -> None:
    await harness.console.join("ann")
    await make_code(harness, "ann")
    [url] = await harness.engine.links_of_member(LOUNGE, "ann")
    assert await harness.engine.links_of_departed(LOUNGE) == []
    await harness.engine.member_left(MemberLeft(LOUNGE, "ann"))
    assert await harness.engine.links_of_departed(LOUNGE) == [url]
    assert await harness.engine.forget_links(LOUNGE, [url]) == 1
    assert await harness.engine.links_of_member(LOUNGE, "ann") == []


async def test_waiting_items_of_one_community_are_made_due(harness: Harness) -> None:
    now = harness.clock.now()

    def row(key: str, community: str, error: str) -> dict:
        return {
            "platform": "console",
            "kind": "grant_role",
            "payload": json.dumps({"community": community, "user": "u", "role": "R"}),
            "dedupe_key": key,
            "attempts": 0,
            "next_attempt_at": now + 900,
            "created_at": now,
            "last_error": error,
        }

    async def add(repo) -> None:
        await repo.conn.execute(
            outbox.insert(),
            [
                row("a", "lounge", "waiting for an admin: role"),
                row("b", "elsewhere", "waiting for an admin: role"),
                row("c", "lounge", "discord 503"),
            ],
        )

    await harness.app.db.write(add)
    woken = await harness.engine.retry_waiting(LOUNGE, ["grant_role"], "waiting for an admin:")
    assert woken == 1

    async def due(repo) -> list[str]:
        rows = await repo.conn.execute(
            sa.select(outbox.c.dedupe_key).where(outbox.c.next_attempt_at <= now)
        )
        return [r[0] for r in rows]

    assert await harness.app.db.read(due) == ["a"]


async def test_the_join_log_names_who_and_why_without_pinging(harness: Harness) -> None:
    await harness.console.set_role("ada", "admin")
    await harness.say("ada", "/set log-channel #joins")
    await harness.console.join("ann")
    code = await make_code(harness, "ann")
    await harness.settle()
    await harness.engine.member_joined(
        MemberJoined(LOUNGE, UserRef("b1", "bob"), JoinSource.INVITE_LINK, code)
    )
    await harness.engine.member_joined(MemberJoined(LOUNGE, UserRef("c1", "cy")))
    await harness.engine.member_left(MemberLeft(LOUNGE, "b1"))
    said = "\n".join(await harness.settle())
    assert "bob (b1) joined through ann's invite" in said
    assert "cy (c1) joined, but the bot saw no invite use" in said
    assert "bob (b1) left before their referral converted" in said


async def test_welcome_text_off_posts_no_welcome(harness: Harness) -> None:
    await harness.console.set_role("ada", "admin")
    await harness.say("ada", "/set welcome-text off")
    await harness.engine.member_joined(MemberJoined(LOUNGE, UserRef("d1", "dee")))
    said = await harness.settle()
    assert not [line for line in said if line.startswith("[bot -> #lounge]")]  # not even "off"
    await harness.say("ada", "/set welcome-text default")  # and back on
    await harness.engine.member_joined(MemberJoined(LOUNGE, UserRef("e1", "eve")))
    assert [line for line in await harness.settle() if line.startswith("[bot -> #lounge]")]


async def test_a_newcomer_found_late_may_type_a_code_within_the_window(harness: Harness) -> None:
    await harness.console.join("ann")
    code = await make_code(harness, "ann")
    harness.clock.advance(2 * DAY)
    joined = harness.clock.now() - DAY
    present = [UserRef("ann", "ann"), UserRef("late", "late"), UserRef("old", "old")]
    await harness.engine.reconcile(LOUNGE, present, {"late": joined})
    ok = await harness.engine.claim_code(LOUNGE, UserRef("late", "late"), code)
    assert ok.referrer == "ann"
    with pytest.raises(UserError) as refused:
        await harness.engine.claim_code(LOUNGE, UserRef("old", "old"), code)
    assert refused.value.key == "code.not_new"
