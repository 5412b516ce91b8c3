"""The pure matching rules (no Discord): uses since the last snapshot -> verdicts per join."""

from __future__ import annotations

from collections import Counter

from bot.platforms.discord.attribution import ORGANIC, InviteSnapshot, assign, diff


def snap(code: str, uses: int, max_uses: int = 0, expires_at: float | None = None):
    return InviteSnapshot(code, uses, max_uses, expires_at)


def test_diff_counts_uses_new_invites_and_vanished_ones() -> None:
    before = {
        "a": snap("a", 3),
        "single": snap("single", 0, max_uses=1),
        "gone": snap("gone", 2, max_uses=10),
        "expired": snap("expired", 0, expires_at=50.0),
    }
    after = {"a": snap("a", 5), "new": snap("new", 1)}
    uses = diff(before, after, window_start=100.0)
    assert uses.exact == Counter({"a": 2, "new": 1, "single": 1})
    assert uses.maybe == {"gone"}  # deleted or expired during the window: count unknown


def test_one_source_with_enough_uses_credits_every_join() -> None:
    d = assign(3, Counter({"CODE": 3}), set())
    assert {v.kind for v in d.verdicts} == {"invite"} and d.verdicts[0].code == "CODE"


def test_several_sources_are_ambiguous_never_guessed() -> None:
    d = assign(2, Counter({"A": 1, "B": 1}), set())
    assert [v.kind for v in d.verdicts] == ["ambiguous", "ambiguous"]
    assert d.verdicts[0].candidates == ("A", "B")


def test_fewer_uses_than_joins_leaves_everyone_ambiguous() -> None:
    d = assign(2, Counter({"A": 1}), set())
    assert [v.kind for v in d.verdicts] == ["ambiguous", "ambiguous"]


def test_vanity_uses_are_organic_and_no_uses_are_unknown() -> None:
    assert assign(1, Counter({ORGANIC: 1}), set()).verdicts[0].kind == "organic"
    assert assign(1, Counter(), set()).verdicts[0].kind == "unknown"
    mixed = assign(2, Counter({ORGANIC: 1, "A": 1}), set()).verdicts[0]
    assert (mixed.kind, mixed.candidates) == ("ambiguous", ("A",))


def test_a_vanished_invite_is_only_a_candidate() -> None:
    v = assign(1, Counter(), {"A"}).verdicts[0]
    assert (v.kind, v.candidates) == ("ambiguous", ("A",))


def test_unexplained_uses_are_carried_as_candidates() -> None:
    d = assign(1, Counter({"A": 1, "B": 1}), set())
    assert d.leftover == {"A", "B"}
    later = assign(1, Counter(), d.leftover).verdicts[0]
    assert later.kind == "ambiguous"
