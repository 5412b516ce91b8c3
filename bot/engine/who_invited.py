"""The newcomer's side of a referral, for moderators: who invited this member, how, when, and
what became of it; and settling an ambiguous join by choosing one of its candidates.

``/referrals`` answers "whom did X bring"; ``who-invited`` answers "who brought X". An
ambiguous join (several members' invites were used in the same moment) is never guessed by
the bot, but a moderator who knows may pick one of its recorded candidates: that creates the
referral as if the join had been attributed, and the choice is audited.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.engine import codes as codes_mod
from bot.engine import communities, members
from bot.engine.context import EngineContext
from bot.engine.errors import UserError
from bot.engine.events import JoinSource
from bot.engine.fraud import review
from bot.engine.models import Community, Participant, Referral
from bot.engine.ports import Repository


@dataclass(frozen=True, slots=True)
class Candidate:
    code: str
    owner: str  # display name ("?" when the code is gone)


@dataclass(frozen=True, slots=True)
class JoinStory:
    person: Participant
    source: str | None  # how the join was recorded; None: known only from commands
    joined_at: int | None
    left_at: int | None
    referral: Referral | None
    referrer: Participant | None
    candidates: tuple[Candidate, ...] = ()


async def story(repo: Repository, community: Community, member: str) -> JoinStory:
    person = await review.member_in(repo, community, member)
    record = await repo.join_record(community.id, person.id)
    source, candidates, joined_at, left_at = record or (None, [], None, None)
    referral = await repo.referral_of_referred(community.program_id, person.id)
    referrer = await repo.participant(referral.referrer_id) if referral is not None else None
    candidates = [c for c in (codes_mod.normalize(x) for x in candidates) if c]
    found = await repo.codes_by_value(candidates)
    owners = await repo.participants({c.participant_id for c in found.values()})
    listed = tuple(
        Candidate(
            codes_mod.display(code),
            owners[found[code].participant_id].display_name
            if code in found and found[code].participant_id in owners
            else "?",
        )
        for code in candidates
    )
    return JoinStory(person, source, joined_at, left_at, referral, referrer, listed)


async def settle(
    repo: Repository,
    ctx: EngineContext,
    community: Community,
    member: str,
    entered: str,
    actor: str,
) -> tuple[Participant, Participant]:
    """Credit an ambiguous join to one of its candidates; (newcomer, referrer)."""
    now = ctx.clock.now()
    person = await review.member_in(repo, community, member)
    record = await repo.join_record(community.id, person.id)
    if record is None or record[0] != JoinSource.AMBIGUOUS.value:
        raise UserError("whoinvited.not_ambiguous", member=person.display_name)
    _source, candidates, joined_at, left_at = record
    if left_at is not None:
        raise UserError("whoinvited.gone", member=person.display_name)
    candidates = [c for c in (codes_mod.normalize(x) for x in candidates) if c]
    value = codes_mod.normalize(entered)
    if value is None or value not in candidates:
        shown = ", ".join(codes_mod.display(c) for c in candidates) or "-"
        raise UserError("whoinvited.not_a_candidate", code=entered[:40], candidates=shown)
    existing = await repo.referral_of_referred(community.program_id, person.id)
    if existing is not None:
        raise UserError("whoinvited.already", member=person.display_name, id=existing.id)
    code = (await repo.codes_by_value([value])).get(value)
    owner = await repo.participant(code.participant_id) if code is not None else None
    if code is None or owner is None or owner.banned_at is not None or code.revoked_at:
        raise UserError("code.inactive")
    if owner.id == person.id:
        raise UserError("code.own")
    s = await communities.settings_of(repo, ctx, community.program_id)
    joined = joined_at if joined_at is not None else now
    row = members.pending_referral_row(
        community, owner.id, person.id, code.id, JoinSource.INVITE_LINK, joined, s, now
    )
    [referral_id] = await repo.insert_referrals([row])
    await repo.add_audit(
        community.program_id,
        community.id,
        actor,
        "join.settled",
        {
            "member": person.user_id,
            "referrer": owner.user_id,
            "code": value,
            "candidates": candidates,
            "referral": referral_id,
        },
        now,
    )
    await repo.add_outbox([members.referrer_notice(community, owner, person, s, now)])
    return person, owner
