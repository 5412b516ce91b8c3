"""The detectors. Each is a plain rule over facts the engine already has, run set-based where
the facts arise (a join batch, a leave, the sweep, a failed code), never as a periodic scan.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from bot.engine.clock import DAY, MINUTE
from bot.engine.models import FlagStatus, Participant, Referral
from bot.engine.ports import Repository
from bot.engine.program_settings import ProgramSettings
from bot.engine.text import Text, t, to_json

# How strongly each detector suggests fraud (0-100). Scores of several flags combine as
# independent evidence: risk = 1 - prod(1 - score/100).
SCORES = {
    "self-referral": 90,
    "ring": 80,
    "banned": 80,
    "rejoin": 60,
    "velocity": 50,
    "leave-early": 45,
    "empty": 45,
    "young-account": 40,
    "code-guessing": 35,
    "ambiguous": 30,
}


@dataclass(frozen=True, slots=True)
class NewFlag:
    program_id: int
    referral_id: int | None
    participant_id: int
    detector: str
    reason: Text
    dedupe_key: str

    def row(self, now: int) -> dict:
        return {
            "program_id": self.program_id,
            "referral_id": self.referral_id,
            "participant_id": self.participant_id,
            "detector": self.detector,
            "score": SCORES[self.detector],
            "reason": json.dumps(to_json(self.reason), ensure_ascii=False),
            "status": FlagStatus.OPEN.value,
            "created_at": now,
            "dedupe_key": self.dedupe_key[:120],
        }


def combined_risk(scores: Iterable[int]) -> int:
    keep = 1.0
    for score in scores:
        keep *= 1 - score / 100
    return round(100 * (1 - keep))


def _minutes(seconds: int) -> int:
    return max(1, round(seconds / MINUTE))


async def on_new_referrals(
    repo: Repository,
    referrals: list[Referral],
    people: dict[int, Participant],
    settings: dict[int, ProgramSettings],
    now: int,
) -> list[NewFlag]:
    """Detectors that judge a referral the moment it exists.

    ``people`` holds at least every referrer and referred member of ``referrals``. Each query
    covers the whole batch, whatever the number of programs in it (participant ids are global).
    """
    refs = [r for r in referrals if settings[r.program_id].risk_mode != "off"]
    if not refs:
        return []
    flags: list[NewFlag] = []
    if any(settings[r.program_id].detects("self-referral") for r in refs):
        linked = await repo.linked_identities(
            {r.referrer_id for r in refs} | {r.referred_id for r in refs}
        )
        flags += [
            self_referral_flag(r, people)
            for r in refs
            if settings[r.program_id].detects("self-referral")
            and (r.referrer_id, r.referred_id) in linked
        ]
    for r in refs:
        s = settings[r.program_id]
        created = people[r.referred_id].account_created_at
        if (
            s.detects("young-account")
            and created is not None
            and r.created_at - created < s.young_account_days * DAY
        ):
            reason = t(
                "fraud.reason.young_account",
                member=people[r.referred_id].display_name,
                count=max(0, (r.created_at - created) // DAY),
                limit=s.young_account_days,
            )
            flags.append(
                NewFlag(
                    r.program_id,
                    r.id,
                    r.referred_id,
                    "young-account",
                    reason,
                    f"young-account:{r.id}",
                )
            )
    velocity = [r for r in refs if settings[r.program_id].detects("velocity")]
    if velocity:
        flags += await _velocity(repo, velocity, people, settings, now)
    rings = [r for r in refs if settings[r.program_id].detects("ring")]
    if rings:
        flags += await _rings(repo, rings, people)
    return flags


async def _velocity(
    repo: Repository,
    refs: list[Referral],
    people: dict[int, Participant],
    settings: dict[int, ProgramSettings],
    now: int,
) -> list[NewFlag]:
    widest = max(settings[r.program_id].velocity_minutes for r in refs) * MINUTE
    recent = await repo.referrals_since({r.referrer_id for r in refs}, now - widest)
    by_referrer: dict[int, list[Referral]] = defaultdict(list)
    for r in recent:
        by_referrer[r.referrer_id].append(r)
    new = {r.id for r in refs}
    flags = []
    for referrer_id, every in by_referrer.items():
        s = settings[every[0].program_id]
        burst = [r for r in every if r.created_at >= now - s.velocity_minutes * MINUTE]
        if len(burst) <= s.velocity_count:
            continue
        earlier = [r for r in burst if r.id not in new]
        # A burst that crossed the line in an earlier batch was flagged whole then: only this
        # batch's referrals are new to it.
        flagged = [r for r in burst if r.id in new] if len(earlier) > s.velocity_count else burst
        span = max(r.created_at for r in burst) - min(r.created_at for r in burst)
        reason = t(
            "fraud.reason.velocity",
            count=len(burst),
            minutes=t("minutes", count=_minutes(span)),
            referrer=people[referrer_id].display_name,
        )
        flags += [
            NewFlag(r.program_id, r.id, r.referred_id, "velocity", reason, f"velocity:{r.id}")
            for r in flagged
        ]
    return flags


async def _rings(
    repo: Repository, refs: list[Referral], people: dict[int, Participant]
) -> list[NewFlag]:
    """A referred B, and B (or someone B referred) referred A."""
    # Who referred each referrer (A's own referrer X)...
    upstream = {
        r.referred_id: r.referrer_id
        for r in await repo.referrals_of_referred({r.referrer_id for r in refs})
    }
    # ...and whom each newly referred member B has referred.
    downstream: dict[int, set[int]] = defaultdict(set)
    statuses = ("pending", "converted", "held", "left", "expired")
    for r in await repo.referrals_by({r.referred_id for r in refs}, statuses):
        downstream[r.referrer_id].add(r.referred_id)
    flags = []
    for r in refs:
        x = upstream.get(r.referrer_id)
        if x is not None and (x == r.referred_id or x in downstream.get(r.referred_id, set())):
            reason = t(
                "fraud.reason.ring",
                referrer=people[r.referrer_id].display_name,
                member=people[r.referred_id].display_name,
            )
            flags.append(NewFlag(r.program_id, r.id, r.referrer_id, "ring", reason, f"ring:{r.id}"))
    return flags


def self_referral_flag(r: Referral, people: dict[int, Participant]) -> NewFlag:
    reason = t(
        "fraud.reason.self_referral",
        member=people[r.referred_id].display_name,
        referrer=people[r.referrer_id].display_name,
    )
    return NewFlag(
        r.program_id, r.id, r.referred_id, "self-referral", reason, f"self-referral:{r.id}"
    )


def rejoin_flag(
    program_id: int, owner: Participant, member: Participant, days_away: int | None, key: str
) -> NewFlag:
    reason = (
        t(
            "fraud.reason.rejoin_after",
            member=member.display_name,
            referrer=owner.display_name,
            count=days_away,
        )
        if days_away is not None
        else t("fraud.reason.rejoin", member=member.display_name, referrer=owner.display_name)
    )
    return NewFlag(program_id, None, owner.id, "rejoin", reason, key)


def ambiguous_flag(program_id: int, member: Participant, owners: list[str], key: str) -> NewFlag:
    return NewFlag(
        program_id,
        None,
        member.id,
        "ambiguous",
        t(
            "fraud.reason.ambiguous",
            member=member.display_name,
            count=len(owners),
            candidates=", ".join(owners) or "-",
        ),
        key,
    )


def banned_flag(program_id: int, owner: Participant, member: Participant, key: str) -> NewFlag:
    return NewFlag(
        program_id,
        None,
        owner.id,
        "banned",
        t(
            "fraud.reason.banned",
            member=member.display_name,
            referrer=owner.display_name,
        ),
        key,
    )


def guessing_flag(program_id: int, member: Participant, attempts: int, minutes: int) -> NewFlag:
    return NewFlag(
        program_id,
        None,
        member.id,
        "code-guessing",
        t(
            "fraud.reason.code_guessing",
            member=member.display_name,
            count=attempts,
            minutes=t("minutes", count=minutes),
        ),
        f"code-guessing:{member.id}:{attempts}",
    )


async def referrer_patterns(
    repo: Repository,
    referrers: dict[int, Participant],
    settings: dict[int, ProgramSettings],
    now: int,
) -> list[NewFlag]:
    """Leave-early and empty referrals: patterns over a referrer's whole history."""
    flags: list[NewFlag] = []
    watch = {pid: p for pid, p in referrers.items() if settings[p.program_id].risk_mode != "off"}
    if not watch:
        return flags
    left: dict[int, int] = defaultdict(int)
    total: dict[int, int] = defaultdict(int)
    settled: dict[int, int] = defaultdict(int)  # joined over a day ago: silence means something
    every = ("pending", "converted", "left", "expired", "held", "rejected")
    for r in await repo.referrals_by(watch, every):
        total[r.referrer_id] += 1
        left[r.referrer_id] += r.status == "left"
        settled[r.referrer_id] += r.created_at <= now - DAY
    silent = await repo.silent_referred(watch, now - DAY)
    for pid, person in watch.items():
        s = settings[person.program_id]
        if (
            s.detects("leave-early")
            and left[pid] >= s.leave_early_count
            and left[pid] * 100 >= s.leave_early_share * total[pid]
        ):
            reason = t(
                "fraud.reason.leave_early",
                referrer=person.display_name,
                count=left[pid],
                total=total[pid],
            )
            flags.append(
                NewFlag(person.program_id, None, pid, "leave-early", reason, f"leave-early:{pid}")
            )
        quiet = silent.get(pid, 0)
        if (
            s.detects("empty")
            and quiet >= s.empty_count
            and quiet * 100 >= s.empty_share * settled[pid]
        ):
            reason = t(
                "fraud.reason.empty", referrer=person.display_name, count=quiet, total=settled[pid]
            )
            flags.append(NewFlag(person.program_id, None, pid, "empty", reason, f"empty:{pid}"))
    return flags
