"""Every Bot API call is paced, and a refused send does not cost a second slot."""

from dataclasses import replace

from bot.platforms.telegram.pacing import Limits, Pacer
from tests.fakes.telegram_api import FakeTelegram
from tests.platforms.telegram.conftest import PACING, World, texts


async def test_a_burst_of_lookups_stays_under_the_calls_limit(sqlite_url: str, fake: FakeTelegram):
    fake.limits = replace(fake.limits, calls_max=4)  # Telegram is strict with this bot today
    owner = fake.user("Olga", started=True)
    group = fake.add_group("Fans", owner)
    members = [fake.user(f"M{i}", started=True) for i in range(24)]
    for member in members:
        fake.join(group, member)
    world = World(sqlite_url, fake)
    world.call_limits = replace(PACING, global_max=4)
    await world.open()
    try:
        await world.settle()
        for member in members:  # everyone asks privately at once: one getChatMember each
            fake.say(member["id"], member, "/status")
        sent = await world.settle()
        for member in members:
            [answer] = texts(sent, member["id"])
            assert answer.startswith("Referrals: 0 pending")
    finally:
        await world.close()
    assert fake.too_many == []  # (also checked by the fixture) not one 429


async def test_a_send_refused_with_429_is_retried_once_and_arrives_once(world: World):
    fake = world.fake
    owner = fake.user("Olga", started=True)
    fake.add_group("Fans", owner)
    await world.settle()
    assert world.tg is not None
    fake.fail_next(owner["id"], retry_after=1)
    world.clock.advance(2)  # the 429's wait passes on the clock both sides share
    await world.tg.say(owner["id"], "hello")
    assert fake.forced_answered == [(owner["id"], 1)]
    assert fake.texts(owner["id"]).count("hello") == 1


async def test_a_refused_send_does_not_count_against_the_overall_limit():
    now = [100.0]
    pacer = Pacer(Limits(global_max=2, margin=0.0), clock=lambda: now[0])  # time stands still
    async with pacer.slot(1, False) as refused:
        refused.release()  # Telegram answered 429: it did not count this send
    async with pacer.slot(2, False):
        pass
    assert pacer.wait(3, False) == 0.0  # one place left in this second: the 429 took none
    async with pacer.slot(3, False):
        pass
    assert pacer.wait(4, False) > 0.0  # two sends counted: the next waits for the window
