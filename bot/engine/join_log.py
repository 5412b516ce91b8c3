"""The optional join/leave log channel: who joined, through whose invite or why nobody is
credited; who left and what that did to a pending referral.

Lines name people by display name and id, never as mentions: a log must not ping anyone.
Each line is an outbox row with its own dedupe key, written in the transaction of the join or
leave it describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.engine import communities
from bot.engine.events import JoinSource
from bot.engine.models import Community, Participant
from bot.engine.notify import to_channel
from bot.engine.program_settings import ProgramSettings
from bot.engine.text import Text, t


@dataclass(frozen=True, slots=True)
class JoinLine:
    community: Community
    settings: ProgramSettings
    person: Participant
    source: JoinSource
    outcome: str  # new | rejoin
    join_number: int
    credited_to: str | None = None
    not_credited: str | None = None
    candidates: tuple[str, ...] = ()  # display names of an ambiguous join's candidates


def wanted(settings: ProgramSettings, community: Community) -> bool:
    return bool(settings.log_channel) and settings.log_community_id == community.id


def _who(person: Participant) -> str:
    return f"{person.display_name} ({person.user_id})"


def join_text(line: JoinLine) -> Text:
    who = _who(line.person)
    if line.outcome == "rejoin":
        return t("joinlog.rejoined", member=who, count=line.join_number)
    if line.credited_to is not None:
        return t("joinlog.credited", member=who, inviter=line.credited_to, how=line.source.value)
    if line.not_credited is not None:
        return t("joinlog.not_credited", member=who, why=t(f"joinlog.why.{line.not_credited}"))
    if line.source == JoinSource.AMBIGUOUS:
        return t("joinlog.ambiguous", member=who, candidates=", ".join(line.candidates) or "-")
    if line.source == JoinSource.ORGANIC:
        return t("joinlog.organic", member=who)
    return t("joinlog.unknown", member=who)


def join_rows(lines: list[JoinLine], now: int) -> list[dict[str, Any]]:
    return [
        to_channel(
            x.community,
            x.settings.log_channel,
            join_text(x),
            communities.locale_of(x.settings, None),
            f"joinlog:join:{x.community.id}:{x.person.id}:{x.join_number}",
            now,
        )
        for x in lines
        if wanted(x.settings, x.community)
    ]


def leave_row(
    community: Community,
    settings: ProgramSettings,
    person: Participant,
    referrers: list[str],
    join_number: int,
    now: int,
) -> dict[str, Any] | None:
    if not wanted(settings, community):
        return None
    who = _who(person)
    text = (
        t("joinlog.left_pending", member=who, inviter=", ".join(referrers))
        if referrers
        else t("joinlog.left", member=who)
    )
    return to_channel(
        community,
        settings.log_channel,
        text,
        communities.locale_of(settings, None),
        f"joinlog:leave:{community.id}:{person.id}:{join_number}",
        now,
    )
