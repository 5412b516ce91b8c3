"""A seeded synthetic program: 500 honest referrals and 50 fraudulent ones, replayed through
the real engine (console platform, SQLite), then scored from the flags the detectors raised.

Honest: 100 long-standing members refer 500 newcomers over two weeks; accounts are mostly
old (1 % are under a week), 85 % take part, 10 % leave early, 5 % stay silent.
Fraud (50): a velocity burst (15), a young-account farm (10), second accounts an admin later
links as the same person (5), referral rings closed by typed codes (5), a join-and-leave farm
(5) and an empty farm whose recruits never post (10).

A referral counts as flagged when a flag names it, or when its referrer carries a
behaviour flag that the referral itself exhibits (left early / never posted / rejoin).
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from bot.engine.clock import DAY, HOUR, MINUTE, ManualClock
from bot.platforms.console import ConsolePlatform

Action = Callable[[ConsolePlatform], Awaitable[None]]
HORIZON = 14 * DAY


@dataclass
class Plan:
    events: list[tuple[int, int, Action]] = field(default_factory=list)  # (time, order, action)
    fraud: set[str] = field(default_factory=set)  # referred members of fraudulent referrals
    honest: set[str] = field(default_factory=set)
    links: list[tuple[int, str, str]] = field(default_factory=list)  # (time, a, b)

    def at(self, when: int, action: Action) -> None:
        self.events.append((when, len(self.events), action))


def _join(user: str, via: str | None = None, age: int | None = None) -> Action:
    async def act(c: ConsolePlatform) -> None:
        await c.join(user, via=via, age_days=age)

    return act


def _leave(user: str) -> Action:
    async def act(c: ConsolePlatform) -> None:
        await c.leave(user)

    return act


def _say(user: str, text: str) -> Action:
    async def act(c: ConsolePlatform) -> None:
        await c.say(user, text)

    return act


def _type_code_of(user: str, owner: str) -> Action:
    async def act(c: ConsolePlatform) -> None:
        assert c.app is not None
        community = c.community(None)
        info = await c.app.engine.invite(community.ref, c.user(owner), c.create_referral_link)
        await c.say(user, f"/code {info.code}")

    return act


def _talk(plan: Plan, rng: random.Random, user: str, start: int, count: int) -> None:
    for _ in range(count):
        plan.at(start + rng.randint(HOUR, 4 * DAY), _say(user, "hello there"))


def build(seed: int = 7) -> Plan:
    rng = random.Random(seed)
    plan = Plan()
    referrers = [f"h{i}" for i in range(100)]
    for r in referrers:
        plan.at(0, _join(r, age=rng.randint(200, 3000)))
    weights = [rng.paretovariate(1.5) for _ in referrers]
    for i in range(500):
        user, via = f"hn{i}", rng.choices(referrers, weights)[0]
        when = rng.randint(HOUR, HORIZON - DAY)
        age = rng.randint(1, 6) if rng.random() < 0.01 else rng.randint(30, 3000)
        plan.at(when, _join(user, via=via, age=age))
        plan.honest.add(user)
        fate = rng.random()
        if fate < 0.85:
            _talk(plan, rng, user, when, rng.randint(3, 8))
        elif fate < 0.95:
            plan.at(when + rng.randint(MINUTE, 2 * DAY), _leave(user))
    _fraud(plan, rng)
    plan.events.sort(key=lambda e: (e[0], e[1]))
    return plan


def _fraud(plan: Plan, rng: random.Random) -> None:
    farmers = ("f_burst", "f_young", "f_churn", "f_empty")
    for f in farmers:
        plan.at(0, _join(f, age=rng.randint(200, 2000)))
    start = 3 * DAY + 5 * HOUR
    for i in range(15):  # a burst of bought (aged) accounts within five minutes
        user = f"fz_burst{i}"
        plan.at(start + i * 20, _join(user, via="f_burst", age=rng.randint(100, 900)))
        _talk(plan, rng, user, start, 3)
        plan.fraud.add(user)
    for i in range(10):  # freshly made accounts that post just enough
        user, when = f"fz_young{i}", 2 * DAY + i * 4 * HOUR
        plan.at(when, _join(user, via="f_young", age=rng.randint(0, 3)))
        _talk(plan, rng, user, when, 3)
        plan.fraud.add(user)
    for i in range(5):  # a second account, linked by an admin a day later
        main, alt, when = f"f_self{i}", f"fz_alt{i}", 4 * DAY + i * DAY
        plan.at(when - HOUR, _join(main, age=rng.randint(300, 2000)))
        plan.at(when, _join(alt, via=main, age=rng.randint(30, 400)))
        _talk(plan, rng, alt, when, 3)
        plan.links.append((when + DAY, main, alt))
        plan.fraud.add(alt)
    for i in range(5):  # a ring: a brings b, then a claims b referred them
        a, b, when = f"fz_ring{i}", f"f_ringb{i}", 5 * DAY + i * 7 * HOUR
        plan.at(when, _join(a, age=rng.randint(60, 900)))
        plan.at(when + 10 * MINUTE, _join(b, via=a, age=rng.randint(60, 900)))
        plan.at(when + HOUR, _type_code_of(a, b))
        _talk(plan, rng, a, when, 3)
        _talk(plan, rng, b, when, 3)
        plan.fraud.add(a)  # the ring-closing referral: b -> a
    for i in range(5):  # join, get counted as pending, leave within the hour
        user, when = f"fz_churn{i}", 6 * DAY + i * 5 * HOUR
        plan.at(when, _join(user, via="f_churn", age=rng.randint(60, 900)))
        plan.at(when + rng.randint(5, 50) * MINUTE, _leave(user))
        plan.fraud.add(user)
    for i in range(10):  # recruits who never say a word
        user, when = f"fz_empty{i}", 7 * DAY + i * 3 * HOUR
        plan.at(when, _join(user, via="f_empty", age=rng.randint(60, 900)))
        plan.fraud.add(user)


@dataclass(frozen=True)
class Outcome:
    fraud: int
    fraud_flagged: int
    honest: int
    honest_flagged: int
    flags_by_detector: dict[str, int]
    missed: list[str]
    false_positives: list[str]

    @property
    def recall(self) -> float:
        return self.fraud_flagged / self.fraud

    @property
    def false_positive_rate(self) -> float:
        return self.honest_flagged / self.honest


async def simulate(path: Path, seed: int = 7, step: int = HOUR) -> Outcome:
    from benchmarks.common import fresh, make_app

    plan = build(seed)
    clock = ManualClock()
    app = make_app(fresh(path), clock)
    console = app.platforms["console"]
    assert isinstance(console, ConsolePlatform)
    await app.open()
    try:
        await console.add_community("hub")
        await console.set_role("ada", "admin")
        await console.say("ada", "/set moderator-channel #mods")
        start = clock.now()
        links = sorted(plan.links)
        next_jobs = start + step
        for when, _order, action in plan.events:
            while start + when >= next_jobs:
                clock.set(next_jobs)
                await app.run_jobs()
                next_jobs += step
            clock.set(max(clock.now(), start + when))
            while links and start + links[0][0] <= clock.now():
                _, a, b = links.pop(0)
                await console.say("ada", f"/fraud-link {a} {b}")
            await action(console)
        for _, a, b in links:
            await console.say("ada", f"/fraud-link {a} {b}")
        for _ in range(0, 14 * DAY, 6 * HOUR):  # let every referral convert, expire or leave
            clock.advance(6 * HOUR)
            await app.run_jobs()
    finally:
        await app.close()
    return score(path, plan)


_PATTERN = {"leave-early": "left", "empty": "silent", "rejoin": "any", "banned": "any"}


def score(path: Path, plan: Plan) -> Outcome:
    db = sqlite3.connect(path)
    referrals = db.execute(
        "SELECT r.id, r.referrer_id, r.status, p.user_id, p.message_count FROM referrals r"
        " JOIN participants p ON p.id = r.referred_id"
    ).fetchall()
    flags = db.execute("SELECT referral_id, participant_id, detector FROM fraud_flags").fetchall()
    db.close()
    on_referral = {ref for ref, _, _ in flags if ref is not None}
    on_referrer: dict[int, set[str]] = {}
    for ref, pid, detector in flags:
        if ref is None:
            on_referrer.setdefault(pid, set()).add(detector)
    by_detector: dict[str, int] = {}
    for _, _, detector in flags:
        by_detector[detector] = by_detector.get(detector, 0) + 1

    def flagged(rid: int, referrer: int, status: str, messages: int) -> bool:
        if rid in on_referral:
            return True
        for detector in on_referrer.get(referrer, ()):
            pattern = _PATTERN.get(detector)
            if (
                pattern == "any"
                or (pattern == "left" and status == "left")
                or (pattern == "silent" and messages == 0)
            ):
                return True
        return False

    fraud_hits, honest_hits, missed, false_pos = 0, 0, [], []
    for rid, referrer, status, user, messages in referrals:
        hit = flagged(rid, referrer, status, messages)
        if user in plan.fraud:
            fraud_hits += hit
            if not hit:
                missed.append(user)
        elif user in plan.honest:
            honest_hits += hit
            if hit:
                false_pos.append(user)
    fraud_total = sum(1 for r in referrals if r[3] in plan.fraud)
    honest_total = sum(1 for r in referrals if r[3] in plan.honest)
    return Outcome(
        fraud_total,
        fraud_hits,
        honest_total,
        honest_hits,
        by_detector,
        sorted(missed),
        sorted(false_pos),
    )


if __name__ == "__main__":
    outcome = asyncio.run(simulate(Path("benchmarks/results/fraud.db")))
    print(outcome)
