"""Commands as members and admins meet them: authorization, bad input, linked programs."""

import sqlalchemy as sa

from storage.tables import audit_log, programs
from tests.conftest import Harness


async def count(h: Harness, table) -> int:
    return await h.app.db.read(lambda r: _scalar(r, sa.select(sa.func.count()).select_from(table)))


async def _scalar(repo, stmt):
    return (await repo.conn.execute(stmt)).scalar_one()


async def test_help_lists_only_what_you_may_run(harness: Harness):
    member = (await harness.say("bob", "/help"))[0]
    assert "/status" in member and "/tier-add" not in member
    await harness.console.set_role("ada", "admin")
    admin = (await harness.say("ada", "/help"))[0]
    assert "/tier-add <name> <threshold>" in admin


async def test_bad_text_is_refused_with_a_reason_and_nothing_is_written(harness: Harness):
    await harness.console.set_role("ada", "admin")
    before = await count(harness, audit_log)
    cases = {
        "/set rules-text " + "x" * 2001: "is too long (2001 characters); at most 2000 are allowed",
        "/set rules-text Hello\x07there": "rules-text contains control characters",
        "/tier-add Go\u202eld 3 points 5": "name contains control characters",
        "/set min-days 3 4": "min-days must be a whole number",
        "/leaderboard yesterday": "period must be one of: all, month, week.",
        "/status please": "Too many values. Usage: /status",
        "/frobnicate": "There is no command /frobnicate.",
    }
    for line, message in cases.items():
        said = await harness.say("ada", line)
        assert len(said) == 1 and message in said[0], (line, said)
        assert said[0].startswith("[bot -> @ada (private)]")
    assert await count(harness, audit_log) == before


async def test_display_names_cannot_smuggle_terminal_control(harness: Harness):
    await harness.console.join("eve\x1b[2Jx")
    said = await harness.settle()
    assert said and all("\x1b" not in line for line in said)
    assert any("@eve\\u001b[2jx (private)" in line for line in said)


async def test_communities_linked_into_one_program_share_tiers_and_counts(harness: Harness):
    await harness.console.add_community("harbour")
    await harness.console.set_role("ada", "admin")
    await harness.console.set_role("ada", "admin", "harbour")
    await harness.say("ada", "/tier-add Ace 1 points 5")
    token_reply = (await harness.say("ada", "/link-program"))[0]
    token = token_reply.split("Link token: ")[1].split(" ")[0]
    assert "linked" not in token
    said = await harness.say("ada", f"/link-program {token}", "harbour")
    assert "now part of program #1" in said[0]
    reused = await harness.say("ada", f"/link-program {token}", "harbour")
    assert "unknown, used or expired" in reused[0]
    rules = await harness.say("bob", "/rules", "harbour")
    assert "Ace: 1 referral" in rules[0]
    # A member of the lounge refers someone into the harbour: one program, one count.
    await harness.console.join("alice")
    await harness.console.join("zoe", "harbour", via="alice")
    # Alice's first visit to the harbour is a first welcome, not a "welcome back".
    await harness.console.join("alice", "harbour")
    assert "[bot -> #harbour] Welcome to harbour, @alice!" in await harness.settle()
    status = await harness.say("alice", "/status", "harbour")
    assert "1 pending" in status[0]
    assert await count(harness, programs) == 2  # the harbour's own program is left empty


async def test_a_community_with_referrals_cannot_move(harness: Harness):
    await harness.console.add_community("harbour")
    await harness.console.set_role("ada", "admin")
    await harness.console.set_role("ada", "admin", "harbour")
    await harness.console.join("alice", "harbour")
    await harness.console.join("bob", "harbour", via="alice")
    token = (await harness.say("ada", "/link-program"))[0].split("Link token: ")[1].split(" ")[0]
    said = await harness.say("ada", f"/link-program {token}", "harbour")
    assert "already has referral codes or referrals" in said[0]


def test_a_pasted_mention_names_the_member_wherever_one_is_asked_for():
    from commands.registry import REGISTRY

    for name in ("referrals", "fraud-ban", "fraud-unban", "fraud-approve-all", "fraud-link"):
        command = REGISTRY.get(name)
        tokens = ["<@!175928847299117063>"] + (["<@42>"] if name == "fraud-link" else [])
        values = command.parse_tokens(tokens)
        assert values["member"] == "175928847299117063"
    assert REGISTRY.get("fraud-link").parse_tokens(["ada", "<@42>"])["other"] == "42"
