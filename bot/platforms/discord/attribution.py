"""Who came through which invite: pure bookkeeping, no discord.py and no I/O.

Discord never says which invite a member used. What it does give, to a bot with Manage Server,
is every invite's ``uses`` counter. The tracker keeps the counters it saw last; when a burst of
joins has been collected, ONE fetch of the guild's invites gives the new counters, and
``diff`` turns the two snapshots into uses per invite. ``assign`` then decides each join:

- every use in the window belongs to one source, and there are enough of them: that source
  (a referral code, or organic for the vanity URL);
- uses spread over several sources: nobody can tell who used which, so every join of the window
  is ambiguous with the candidates listed, never guessed;
- no use at all: the joins came some way no invite counts (discovery, "Invite to Server").

A max-use invite that vanished one use short of its maximum was used exactly once (Discord
deletes it on its last use, and the delete event arrives after the join). Any other invite that
vanished since the last snapshot may or may not have been used: it stays a candidate.

The one assumption: a use's join event arrives before the fetch that closes its window (the
window is at least a second long; join events arrive within milliseconds).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

ORGANIC = "~organic"  # the vanity URL, or an invite nobody owns
UNOWNED = "~unowned"  # an invite whose owner the bot cannot tell (kept out of candidates)


@dataclass(frozen=True, slots=True)
class InviteSnapshot:
    code: str
    uses: int
    max_uses: int = 0
    expires_at: float | None = None  # epoch seconds; None: never
    inviter_id: str | None = None


@dataclass(slots=True)
class Uses:
    """Uses per invite code since the previous snapshot."""

    exact: Counter[str] = field(default_factory=Counter)
    maybe: set[str] = field(default_factory=set)  # vanished: an unknown number of uses


def diff(
    before: Mapping[str, InviteSnapshot],
    after: Mapping[str, InviteSnapshot],
    window_start: float,
) -> Uses:
    uses = Uses()
    for code, new in after.items():
        old = before.get(code)
        delta = new.uses - (old.uses if old is not None else 0)
        if delta > 0:
            uses.exact[code] += delta
    for code, old in before.items():
        if code in after:
            continue
        if old.max_uses > 0 and old.uses == old.max_uses - 1:
            uses.exact[code] += 1  # deleted on its last use
        elif old.expires_at is not None and old.expires_at <= window_start:
            continue  # expired before the first join of this window: no use possible
        else:
            uses.maybe.add(code)
    return uses


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: str  # invite | ambiguous | organic | unknown
    code: str | None = None
    candidates: tuple[str, ...] = ()


UNKNOWN = Verdict("unknown")


def _single(source: str) -> Verdict:
    if source == ORGANIC:
        return Verdict("organic")
    if source == UNOWNED:
        return UNKNOWN
    return Verdict("invite", code=source)


def _ambiguous(sources: set[str]) -> Verdict:
    candidates = tuple(sorted(s for s in sources if s not in (ORGANIC, UNOWNED)))
    if candidates:
        return Verdict("ambiguous", candidates=candidates)
    return Verdict("organic") if sources == {ORGANIC} else UNKNOWN


@dataclass(slots=True)
class Decision:
    verdicts: list[Verdict]
    leftover: set[str]  # sources with uses nobody in this window explains (carried as "maybe")


def assign(joins: int, exact: Counter[str], maybe: set[str]) -> Decision:
    """Attribute ``joins`` joins given uses per *source* (referral code, ORGANIC or UNOWNED)."""
    positive = {s for s, n in exact.items() if n > 0}
    sources = positive | maybe
    total = sum(exact[s] for s in positive)
    if not sources:
        return Decision([UNKNOWN] * joins, set())
    if len(sources) == 1:
        (source,) = sources
        if source in positive and total >= joins:
            return Decision([_single(source)] * joins, {source} if total > joins else set())
        # Fewer counted uses than joins (some came in untracked), or only a vanished invite:
        # any one of them may or may not have used it.
        return Decision([_ambiguous(sources)] * joins, set())
    return Decision([_ambiguous(sources)] * joins, positive if total > joins else set())
