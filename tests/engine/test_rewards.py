"""Exactly-once rewards: sweeps racing each other grant each tier once; coupons go out once."""

import asyncio

from bot.engine.clock import DAY
from bot.engine.errors import UserError
from tests.conftest import Harness


async def setup_program(h: Harness) -> None:
    await h.console.set_role("ada", "admin")
    for line in (
        "/set min-days 1",
        "/set min-messages 1",
        "/tier-add One 1 coupon pool",
        "/coupons-add pool C1 C2 C3",
    ):
        await h.say("ada", line)
    await h.console.join("alice")


async def test_racing_sweeps_grant_each_tier_once(harness: Harness):
    await setup_program(harness)
    for i in range(20):
        await harness.console.join(f"n{i}", via="alice")
        await harness.console.say(f"n{i}", "hello")
    await harness.settle()
    harness.clock.advance(DAY)
    await asyncio.gather(*(harness.engine.run_sweep() for _ in range(4)))
    await harness.app.run_jobs()
    said = await harness.settle()
    assert sum("reached One" in line for line in said) == 1
    assert sum("You reached One" in line for line in said) == 1
    status = await harness.say("alice", "/status")
    assert "20 converted" in status[0]


async def test_concurrent_redeems_hand_out_one_coupon(harness: Harness):
    await setup_program(harness)
    await harness.console.join("bob", via="alice")
    await harness.console.say("bob", "hi")
    await harness.advance(DAY)
    replies = await asyncio.gather(
        *(
            harness.engine.redeem(
                harness.console.community(None).ref, harness.console.user("alice"), None
            )
            for _ in range(5)
        ),
        return_exceptions=True,
    )
    coupons = [
        r for rs in replies if isinstance(rs, list) for r in rs if r.text.key == "redeem.coupon"
    ]
    refused = [e for e in replies if isinstance(e, UserError)]
    assert len(coupons) == 1
    assert [e.key for e in refused] == ["redeem.nothing"] * 4
    stock = await harness.say("ada", "/coupons")
    assert "pool: 2 of 3 left" in stock[0]
