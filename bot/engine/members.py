"""Joins, leaves, activity: the hot paths, written set-based for group commit.

``process_joins`` takes every join that arrived while the previous transaction was committing
and handles them with a fixed number of statements, whatever their number.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.engine import codes as codes_mod
from bot.engine import communities, join_log, rewards
from bot.engine.clock import DAY
from bot.engine.context import EngineContext
from bot.engine.events import CommunityRef, JoinSource, MemberJoined, MemberLeft, UserRef
from bot.engine.fraud import detectors, review
from bot.engine.models import (
    CHANNEL,
    Community,
    Membership,
    Participant,
    Referral,
    ReferralStatus,
)
from bot.engine.notify import to_channel, to_user
from bot.engine.ports import Repository
from bot.engine.program_settings import ProgramSettings
from bot.engine.text import Mention, Text, t


@dataclass(frozen=True, slots=True)
class JoinResult:
    participant_id: int
    outcome: str  # new | rejoin | duplicate
    credited_to: str | None = None  # the referrer's display name
    not_credited: str | None = None  # why a code did not credit
    referral_id: int | None = None


@dataclass(frozen=True, slots=True)
class LeaveResult:
    known: bool
    referrals_left: int = 0


def pending_referral_row(
    community: Community,
    referrer_id: int,
    referred_id: int,
    code_id: int,
    source: JoinSource,
    joined: int,
    s: ProgramSettings,
    now: int,
) -> dict[str, Any]:
    """A new pending referral: due ``min_days`` after the join, expiring after the conversion
    window (never before now), whether it came from a join, a typed code or a settled join."""
    return {
        "program_id": community.program_id,
        "referrer_id": referrer_id,
        "referred_id": referred_id,
        "code_id": code_id,
        "community_id": community.id,
        "source": source.value,
        "status": ReferralStatus.PENDING.value,
        "risk": 0,
        "created_at": now,
        "due_at": max(now, joined + s.min_days * DAY),
        "expires_at": max(now, joined + s.conversion_window_days * DAY),
    }


def _participant_row(program_id: int, platform: str, user: UserRef, now: int, origin: str) -> dict:
    return {
        "program_id": program_id,
        "platform": platform,
        "user_id": user.user_id,
        "display_name": user.display_name[:200],
        "locale": user.locale,
        "account_created_at": user.account_created_at,
        "first_joined_at": now,
        "origin": origin,
        "message_count": 0,
        "created_at": now,
    }


def _membership_row(
    participant_id: int,
    community_id: int,
    now: int,
    *,
    joined: bool,
    source: str = "existing",
    details: str | None = None,
    roles: str = "",
) -> dict:
    """A new membership: from a join event (``joined``), or someone found already there."""
    return {
        "participant_id": participant_id,
        "community_id": community_id,
        "joined_at": now if joined else None,
        "left_at": None,
        "first_joined_at": now,
        "join_source": source,
        "join_details": details,
        "message_count": 0,
        "roles": roles,
    }


def _is_active(memberships: Sequence[Membership]) -> bool:
    return any(m.left_at is None for m in memberships)


def _credit_check(
    code_value: str | None,
    ctx_codes: dict,
    owners: dict[int, Participant],
    owner_memberships: dict[int, list[Membership]],
    joiner_program: int,
    joiner_id: int,
) -> tuple[object | None, str | None]:
    """(code, None) when the code credits its owner, else (None, reason)."""
    if code_value is None:
        return None, "code-malformed"
    code = ctx_codes.get(code_value)
    if code is None or code.program_id != joiner_program:
        return None, "code-unknown"
    owner = owners.get(code.participant_id)
    if owner is not None and owner.banned_at is not None:
        return None, "referrer-banned"  # before "revoked": a ban revokes the code too
    if code.revoked_at is not None:
        return None, "code-revoked"
    if code.participant_id == joiner_id:
        return None, "self-referral"
    if owner is None:
        return None, "referrer-banned"
    if not _is_active(owner_memberships.get(owner.id, [])):
        return None, "referrer-left"
    return code, None


async def process_joins(
    repo: Repository, ctx: EngineContext, events: list[MemberJoined]
) -> list[JoinResult]:
    now = ctx.clock.now()
    comms = await communities.resolve(repo, ctx, (e.community for e in events), now)
    settings = await communities.settings_for(repo, ctx, {c.program_id for c in comms.values()})

    def key_of(e: MemberJoined) -> tuple[int, str, str]:
        c = comms[(e.community.platform, e.community.external_id)]
        return (c.program_id, c.platform, e.user.user_id)

    existing = await repo.participants_by_identity(key_of(e) for e in events)
    new_rows: dict[tuple[int, str, str], dict] = {}
    for e in events:
        k = key_of(e)
        if k not in existing and k not in new_rows:
            origin = "existing" if e.rejoined else "join"
            joined_at = min(e.joined_at, now) if e.joined_at is not None else now
            new_rows[k] = _participant_row(k[0], k[1], e.user, joined_at, origin)
    upserted = await repo.upsert_participants(list(new_rows.values()))
    # A participant another process created meanwhile (the same person joining another
    # community of the program there) is an existing one here: read it, never insert twice.
    lost = {k for k, (_, made) in zip(new_rows, upserted, strict=True) if not made}
    if lost:
        existing.update(await repo.participants_by_identity(lost))
    new_ids = [pid for pid, made in upserted if made]
    people: dict[tuple[int, str, str], Participant] = dict(existing)
    for (k, row), (pid, made) in zip(new_rows.items(), upserted, strict=True):
        if not made:
            continue
        people[k] = Participant(
            id=pid,
            program_id=k[0],
            platform=k[1],
            user_id=k[2],
            display_name=row["display_name"],
            locale=row["locale"],
            account_created_at=row["account_created_at"],
            first_joined_at=row["first_joined_at"],
            origin=row["origin"],
            message_count=0,
            banned_at=None,
            code_lock_until=None,
        )
    memberships = await repo.memberships_of(p.id for p in existing.values())

    wanted = {codes_mod.normalize(e.code) for e in events if e.code}
    wanted |= {codes_mod.normalize(code) for e in events for code in e.candidates}
    wanted.discard(None)
    code_rows = await repo.codes_by_value(wanted)  # type: ignore[arg-type]
    owner_ids = {c.participant_id for c in code_rows.values()}
    owners = await repo.participants(owner_ids)
    owner_memberships = await repo.memberships_of(owner_ids)

    results: list[JoinResult] = []
    new_memberships: list[dict] = []
    rejoins: list[dict] = []
    referral_rows: list[dict] = []
    flags: list[detectors.NewFlag] = []
    greetings: list[Greeting] = []
    quiet_joins: list[bool] = []  # parallel to greetings: recorded without greeting
    inserted = frozenset(new_ids)
    first_seen: set[int] = set()
    active_pairs: set[tuple[int, int]] = set()
    arrivals: list[tuple[int, Community, int]] = []  # known people arriving: their roles follow

    for e in events:
        c = comms[(e.community.platform, e.community.external_id)]
        s = settings[c.program_id]
        person = people[key_of(e)]
        pair = (c.id, person.id)
        is_new = person.id in inserted and person.id not in first_seen and person.origin == "join"
        returning = e.rejoined or current_known(memberships, person.id, c.id)
        first_seen.add(person.id)
        if pair in active_pairs:
            results.append(JoinResult(person.id, "duplicate"))
            continue
        current = next((m for m in memberships.get(person.id, []) if m.community_id == c.id), None)
        if current is not None and current.left_at is None:
            results.append(JoinResult(person.id, "duplicate"))
            active_pairs.add(pair)
            continue
        active_pairs.add(pair)
        if person.id not in inserted:
            arrivals.append((person.id, c, 1 if current is None else current.join_count + 1))
        quiet = e.quiet
        details = json.dumps({"candidates": list(e.candidates)}) if e.candidates else None
        roles = "\n".join(e.roles)
        join_number = 1 if current is None else current.join_count + 1
        if current is not None:
            rejoins.append(
                {
                    "mid": current.id,
                    "joined_at": now,
                    "left_at": None,
                    "join_count": join_number,
                    "join_source": e.source.value,
                    "join_details": details,
                    "roles": roles,
                }
            )
        else:
            new_memberships.append(
                _membership_row(
                    person.id,
                    c.id,
                    now,
                    joined=True,
                    source=e.source.value,
                    details=details,
                    roles=roles,
                )
            )
        if e.source == JoinSource.AMBIGUOUS and s.detects("ambiguous"):
            names = []
            for candidate in e.candidates:
                found = code_rows.get(codes_mod.normalize(candidate) or "")
                if found is not None and found.participant_id in owners:
                    names.append(owners[found.participant_id].display_name)
            flags.append(
                detectors.ambiguous_flag(
                    c.program_id, person, names, f"ambiguous:{person.id}:{c.id}:{join_number}"
                )
            )
        if not is_new:
            if e.code and s.detects("rejoin"):
                flags += _rejoin_flags(
                    e, c, person, current, code_rows, owners, s, now, join_number
                )
            results.append(JoinResult(person.id, "rejoin"))
            greetings.append(Greeting(c, person, None, s, False, join_number, returning))
            quiet_joins.append(quiet)
            continue
        if e.source not in (JoinSource.INVITE_LINK, JoinSource.TYPED_CODE) or not e.code:
            results.append(JoinResult(person.id, "new"))
            greetings.append(Greeting(c, person, None, s, True, join_number, returning))
            quiet_joins.append(quiet)
            continue
        code, why = _credit_check(
            codes_mod.normalize(e.code),
            code_rows,
            owners,
            owner_memberships,
            c.program_id,
            person.id,
        )
        if why == "referrer-banned" and s.detects("banned"):
            banned_owner = owners[code_rows[codes_mod.normalize(e.code) or ""].participant_id]
            flags.append(
                detectors.banned_flag(c.program_id, banned_owner, person, f"banned:{person.id}")
            )
        if code is None:
            results.append(JoinResult(person.id, "new", not_credited=why))
            greetings.append(Greeting(c, person, None, s, True, join_number, returning))
            quiet_joins.append(quiet)
            continue
        owner = owners[code.participant_id]  # type: ignore[attr-defined]
        referral_rows.append(
            pending_referral_row(c, owner.id, person.id, code.id, e.source, now, s, now)
        )
        results.append(JoinResult(person.id, "new", credited_to=owner.display_name))
        greetings.append(Greeting(c, person, owner, s, True, join_number, returning))
        quiet_joins.append(quiet)

    await repo.insert_memberships(new_memberships)
    await repo.update_memberships(rejoins)
    await rewards.roles_on_arrival(repo, arrivals, now, ctx)
    await repo.add_outbox(
        join_log.join_rows(
            _log_lines(
                events, results, comms, settings, people, key_of, memberships, code_rows, owners
            ),
            now,
        )
    )
    referral_ids = await repo.insert_referrals(referral_rows)
    by_referred = {
        row["referred_id"]: rid for row, rid in zip(referral_rows, referral_ids, strict=True)
    }
    results = [
        JoinResult(
            r.participant_id,
            r.outcome,
            r.credited_to,
            r.not_credited,
            by_referred.get(r.participant_id) if r.credited_to else None,
        )
        for r in results
    ]
    created = [
        _referral_from_row(row, rid) for row, rid in zip(referral_rows, referral_ids, strict=True)
    ]
    everyone = {p.id: p for p in people.values()} | owners
    flags += await detectors.on_new_referrals(repo, created, everyone, settings, now)
    await review.record(repo, ctx, flags, now)
    await _greet(repo, ctx, [g for g, q in zip(greetings, quiet_joins, strict=True) if not q], now)
    return results


def _log_lines(
    events: list[MemberJoined],
    results: list[JoinResult],
    comms: Mapping[tuple[str, str], Community],
    settings: Mapping[int, ProgramSettings],
    people: Mapping[tuple[int, str, str], Participant],
    key_of: Callable[[MemberJoined], tuple[int, str, str]],
    memberships: Mapping[int, list[Membership]],
    code_rows: Mapping[str, Any],
    owners: Mapping[int, Participant],
) -> list[join_log.JoinLine]:
    """What the join/leave log says about each recorded join (quiet ones are not logged)."""
    lines = []
    for e, r in zip(events, results, strict=True):
        c = comms[(e.community.platform, e.community.external_id)]
        s = settings[c.program_id]
        if r.outcome == "duplicate" or e.quiet or not join_log.wanted(s, c):
            continue
        person = people[key_of(e)]
        before = next((m for m in memberships.get(person.id, []) if m.community_id == c.id), None)
        names = []
        for candidate in e.candidates:
            found = code_rows.get(codes_mod.normalize(candidate) or "")
            if found is not None and found.participant_id in owners:
                names.append(owners[found.participant_id].display_name)
        lines.append(
            join_log.JoinLine(
                c,
                s,
                person,
                e.source,
                r.outcome,
                1 if before is None else before.join_count + 1,
                r.credited_to,
                r.not_credited,
                tuple(names),
            )
        )
    return lines


def _referral_from_row(row: dict, rid: int) -> Referral:
    return Referral(
        id=rid,
        program_id=row["program_id"],
        referrer_id=row["referrer_id"],
        referred_id=row["referred_id"],
        code_id=row["code_id"],
        community_id=row["community_id"],
        source=row["source"],
        status=ReferralStatus(row["status"]),
        created_at=row["created_at"],
        due_at=row["due_at"],
        expires_at=row["expires_at"],
        converted_at=None,
        ended_at=None,
        reason=None,
    )


def _rejoin_flags(
    e: MemberJoined,
    c: Community,
    person: Participant,
    current: Membership | None,
    code_rows: dict,
    owners: dict[int, Participant],
    s: ProgramSettings,
    now: int,
    join_number: int,
) -> list[detectors.NewFlag]:
    """Someone who was here before comes back through another member's code."""
    found = code_rows.get(codes_mod.normalize(e.code or "") or "")
    if found is None or found.participant_id == person.id or found.participant_id not in owners:
        return []
    away = None
    if current is not None and current.left_at is not None:
        away = (now - current.left_at) // DAY
        if away > s.rejoin_days:
            return []
    return [
        detectors.rejoin_flag(
            c.program_id,
            owners[found.participant_id],
            person,
            away,
            f"rejoin:{person.id}:{c.id}:{join_number}",
        )
    ]


@dataclass(frozen=True, slots=True)
class Greeting:
    community: Community
    person: Participant
    referrer: Participant | None
    settings: ProgramSettings
    is_new: bool
    join_number: int  # this person's n-th join of this community: names the welcome uniquely
    returning: bool  # was a member of this community before ("welcome back")


def current_known(
    memberships: dict[int, list[Membership]], person_id: int, community_id: int
) -> bool:
    return any(m.community_id == community_id for m in memberships.get(person_id, []))


async def _greet(repo: Repository, ctx: EngineContext, greetings: list[Greeting], now: int) -> None:
    """Welcome in the community, the newcomer's own code in private, a notice to the referrer."""
    rows: list[dict] = []
    own_codes = await ensure_codes(
        repo,
        [
            g.person
            for g in greetings
            if g.is_new and communities.dm_newcomers(ctx, g.community, g.settings)
        ],
        now,
        fresh=True,
    )
    for g in greetings:
        c, person, referrer, s = g.community, g.person, g.referrer, g.settings
        member = Mention(person.user_id, person.display_name)
        returning = g.returning
        locale = communities.locale_of(s, None)
        if returning:
            body: Text = t("welcome.back", member=member, community=c.name)
        elif s.welcome_text:
            body = t(
                "welcome.custom",
                body=Text(
                    "$custom",
                    {
                        "template": s.welcome_text,
                        "member": member,
                        "community": c.name,
                        "inviter": Mention(referrer.user_id, referrer.display_name)
                        if referrer
                        else "",
                    },
                ),
            )
        elif referrer is not None:
            body = t(
                "welcome.referred",
                member=member,
                community=c.name,
                inviter=Mention(referrer.user_id, referrer.display_name),
            )
        else:
            body = t("welcome.plain", member=member, community=c.name)
        if not s.welcome_off and c.kind != CHANNEL:  # a channel post reaches every subscriber
            channel = s.welcome_channel if s.welcome_community_id == c.id else None
            rows.append(
                to_channel(
                    c, channel, body, locale, f"welcome:{c.id}:{person.id}:{g.join_number}", now
                )
            )
        code = own_codes.get(person.id)
        if code is not None:
            rows.append(
                to_user(
                    c,
                    person.user_id,
                    t(
                        "dm.newcomer_channel" if c.kind == CHANNEL else "dm.newcomer",
                        community=c.name,
                        code=codes_mod.display(code),
                        min_days=t("days", count=s.min_days),
                        min_messages=t("messages", count=s.min_messages),
                        rules=s.rules_text or t("rules.default_summary"),
                    ),
                    communities.locale_of(s, person.locale),
                    f"dm-newcomer:{person.id}",
                    now,
                )
            )
        if referrer is not None:
            rows.append(referrer_notice(c, referrer, person, s, now))
    await repo.add_outbox(rows)


def referrer_notice(
    c: Community, referrer: Participant, person: Participant, s: ProgramSettings, now: int
) -> dict:
    """Tell a referrer someone joined with their code, and what still has to happen."""
    return to_user(
        c,
        referrer.user_id,
        t(
            "dm.referrer_joined_channel" if c.kind == CHANNEL else "dm.referrer_joined",
            member=person.display_name,
            community=c.name,
            min_days=t("days", count=s.min_days),
            min_messages=t("messages", count=s.min_messages),
        ),
        communities.locale_of(s, referrer.locale),
        f"referrer-joined:{person.id}",
        now,
    )


async def ensure_codes(
    repo: Repository, people: list[Participant], now: int, *, fresh: bool = False
) -> dict[int, str]:
    """The active code of each participant, creating missing ones (set-based).

    ``fresh``: the participants were created in this transaction, so none has a code yet.
    """
    out: dict[int, str] = {}
    missing: list[Participant] = []
    for p in people:
        existing = None if fresh else await repo.active_code(p.id)
        if existing is not None:
            out[p.id] = existing.code
        else:
            missing.append(p)
    for _attempt in range(5):  # a collision in a 49-bit space is rare; retry just those
        if not missing:
            break
        rows = [
            {
                "program_id": p.program_id,
                "participant_id": p.id,
                "code": codes_mod.generate(),
                "created_at": now,
            }
            for p in missing
        ]
        inserted = await repo.insert_codes(rows)
        out.update({pid: code.code for pid, code in inserted.items()})
        missing = [p for p in missing if p.id not in inserted]
    if missing:
        raise RuntimeError("could not generate unique referral codes")
    return out


async def process_leaves(
    repo: Repository, ctx: EngineContext, events: list[MemberLeft]
) -> list[LeaveResult]:
    now = ctx.clock.now()
    results: list[LeaveResult] = []
    referrers_touched: set[int] = set()
    for e in events:
        c = await communities.existing(repo, ctx, e.community)
        if c is None:
            results.append(LeaveResult(False))
            continue
        person = (await repo.participants_by_identity([(c.program_id, c.platform, e.user_id)])).get(
            (c.program_id, c.platform, e.user_id)
        )
        if person is None:
            results.append(LeaveResult(False))
            continue
        mine = (await repo.memberships_of([person.id])).get(person.id, [])
        here = next((m for m in mine if m.community_id == c.id and m.left_at is None), None)
        if here is None:
            results.append(LeaveResult(True))
            continue
        await repo.update_memberships([{"mid": here.id, "left_at": now}])
        if any(m.left_at is None for m in mine if m.id != here.id):
            results.append(LeaveResult(True))
            continue
        open_refs = await repo.open_referrals_of_referred([person.id])
        referrers_touched.update(r.referrer_id for r in open_refs)
        s = await communities.settings_of(repo, ctx, c.program_id)
        if join_log.wanted(s, c):
            by = await repo.participants({r.referrer_id for r in open_refs})
            row = join_log.leave_row(
                c, s, person, [p.display_name for p in by.values()], here.join_count, now
            )
            await repo.add_outbox([row] if row else [])
        await repo.update_referrals(
            [
                {
                    "rid": r.id,
                    "expect": r.status.value,
                    "status": ReferralStatus.LEFT.value,
                    "due_at": r.due_at,
                    "converted_at": None,
                    "ended_at": now,
                    "reason": "left before converting",
                }
                for r in open_refs
            ]
        )
        results.append(LeaveResult(True, len(open_refs)))
    if referrers_touched:  # leave-early shows once the referral has become "left"
        referrers = await repo.participants(referrers_touched)
        left_settings = await communities.settings_for(
            repo, ctx, {p.program_id for p in referrers.values()}
        )
        flags = await detectors.referrer_patterns(repo, referrers, left_settings, now)
        await review.record(repo, ctx, flags, now)
    return results


@dataclass(slots=True)
class Activity:
    community: CommunityRef
    user: UserRef
    count: int
    roles: tuple[str, ...] | None


async def flush_activity(
    repo: Repository, ctx: EngineContext, batches: list[list[Activity]]
) -> list[int]:
    """Add buffered message counts in one batched statement per table; returns rows touched."""
    now = ctx.clock.now()
    items = [a for batch in batches for a in batch]
    comms = await communities.resolve(repo, ctx, (a.community for a in items), now)
    keys = {}
    for a in items:
        c = comms[(a.community.platform, a.community.external_id)]
        keys[(c.program_id, c.platform, a.user.user_id)] = (c, a)
    people = await repo.participants_by_identity(keys)
    unknown = [k for k in keys if k not in people]
    rows = [_participant_row(k[0], k[1], keys[k][1].user, now, "existing") for k in unknown]
    for k, pid in zip(unknown, await repo.insert_participants(rows), strict=True):
        people[k] = Participant(
            pid,
            k[0],
            k[1],
            k[2],
            keys[k][1].user.display_name,
            None,
            None,
            now,
            "existing",
            0,
            None,
            None,
        )
    mships = await repo.memberships_of(p.id for p in people.values())
    comm_by_id = {c.id: c for c in comms.values()}
    per_participant: dict[int, int] = defaultdict(int)
    per_membership: dict[int, int] = defaultdict(int)
    role_updates: dict[int, str] = {}
    new_memberships: dict[tuple[int, int], dict] = {}
    for a in items:
        c = comms[(a.community.platform, a.community.external_id)]
        person = people[(c.program_id, c.platform, a.user.user_id)]
        per_participant[person.id] += a.count
        m = next((m for m in mships.get(person.id, []) if m.community_id == c.id), None)
        if m is None:
            row = new_memberships.setdefault(
                (c.id, person.id), _membership_row(person.id, c.id, now, joined=False)
            )
            row["message_count"] += a.count
            if a.roles is not None:
                row["roles"] = "\n".join(a.roles)
            continue
        per_membership[m.id] += a.count
        if a.roles is not None:
            role_updates[m.id] = "\n".join(a.roles)
    await repo.insert_memberships(list(new_memberships.values()))
    await rewards.roles_on_arrival(
        repo, [(pid, comm_by_id[cid], 1) for cid, pid in new_memberships], now, ctx
    )
    await repo.add_message_counts(list(per_participant.items()), list(per_membership.items()))
    await repo.update_memberships([{"mid": mid, "roles": r} for mid, r in role_updates.items()])
    return [len(batch) for batch in batches]


async def set_roles(
    repo: Repository,
    ctx: EngineContext,
    community: CommunityRef,
    user_id: str,
    roles: tuple[str, ...],
) -> None:
    c = await communities.existing(repo, ctx, community)
    if c is None:
        return
    person = (await repo.participants_by_identity([(c.program_id, c.platform, user_id)])).get(
        (c.program_id, c.platform, user_id)
    )
    if person is None:
        return
    m = next(
        (
            m
            for m in (await repo.memberships_of([person.id])).get(person.id, [])
            if m.community_id == c.id
        ),
        None,
    )
    if m is not None:
        await repo.update_memberships([{"mid": m.id, "roles": "\n".join(roles)}])


async def touch(
    repo: Repository,
    ctx: EngineContext,
    ref: CommunityRef,
    user: UserRef,
    roles: tuple[str, ...] | None = None,
) -> tuple[Community, Participant]:
    """The community and participant behind a command, created on first interaction.

    Someone we first meet through a command was already a member: origin "existing", so they
    can refer others but can never be counted as someone's referral.
    """
    now = ctx.clock.now()
    c = (await communities.resolve(repo, ctx, [ref], now))[(ref.platform, ref.external_id)]
    key = (c.program_id, c.platform, user.user_id)
    person = (await repo.participants_by_identity([key])).get(key)
    if person is None:
        [pid] = await repo.insert_participants([_participant_row(*key[:2], user, now, "existing")])
        person = Participant(
            pid,
            c.program_id,
            c.platform,
            user.user_id,
            user.display_name[:200],
            user.locale,
            user.account_created_at,
            now,
            "existing",
            0,
            None,
            None,
        )
    mine = (await repo.memberships_of([person.id])).get(person.id, [])
    here = next((m for m in mine if m.community_id == c.id), None)
    if here is None:
        await repo.insert_memberships(
            [_membership_row(person.id, c.id, now, joined=False, roles="\n".join(roles or ()))]
        )
        await rewards.roles_on_arrival(repo, [(person.id, c, 1)], now, ctx)
    elif roles is not None and tuple(roles) != here.roles:
        await repo.update_memberships([{"mid": here.id, "roles": "\n".join(roles)}])
    if user.display_name and user.display_name[:200] != person.display_name:
        await repo.update_participants(
            [{"pid": person.id, "display_name": user.display_name[:200]}]
        )
        person.display_name = user.display_name[:200]
    return c, person


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    left: int  # stored as members, gone now: marked left (their pending referrals end)
    added: int  # joined while the bot was away: recorded, never credited


async def reconcile(
    repo: Repository,
    ctx: EngineContext,
    ref: CommunityRef,
    present: list[UserRef],
    newcomers: Mapping[str, int] | None = None,
) -> ReconcileResult:
    """After downtime: make stored membership match who is actually in the community.

    ``newcomers`` (user id -> when they joined) are missed joins the platform vouches for as
    first joins made while the bot was already there: recorded from that moment, so they may
    still type a code within the code window. Every other missed join can never be credited.
    """
    now = ctx.clock.now()
    c = (await communities.resolve(repo, ctx, [ref], now))[(ref.platform, ref.external_id)]
    here = {u.user_id: u for u in present}
    stored = await repo.active_members(c.id)
    gone = [p.user_id for _, p in stored if p.user_id not in here]
    if gone:
        await process_leaves(repo, ctx, [MemberLeft(ref, uid) for uid in gone])
    known = {p.user_id for _, p in stored}
    missed = [u for uid, u in here.items() if uid not in known]
    if missed:
        # Unknown-source joins: recorded so they are members, and marked rejoined so that
        # nothing can credit them later (the join's source is lost for good).
        first = newcomers or {}
        await process_joins(
            repo,
            ctx,
            [
                MemberJoined(
                    ref,
                    u,
                    JoinSource.UNKNOWN,
                    rejoined=u.user_id not in first,
                    quiet=True,
                    joined_at=first.get(u.user_id),
                )
                for u in missed
            ],
        )
    return ReconcileResult(len(gone), len(missed))
