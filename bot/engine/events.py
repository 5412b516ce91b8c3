"""Events that platform adapters hand to the engine, in platform-neutral terms."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from bot.engine.text_rules import clean_name


class JoinSource(StrEnum):
    INVITE_LINK = "invite-link"  # the platform saw which personal link was used
    TYPED_CODE = "typed-code"  # the newcomer typed a code while joining (console, forms)
    AMBIGUOUS = "ambiguous"  # several links could explain the join; never guessed
    ORGANIC = "organic"  # vanity URL, public "Join" button, discovery
    UNKNOWN = "unknown"  # the bot was away, or the platform says nothing


@dataclass(frozen=True, slots=True)
class CommunityRef:
    platform: str
    external_id: str
    name: str = ""
    kind: str = "group"  # "channel": a broadcast channel (see Community.kind); used on creation


@dataclass(frozen=True, slots=True)
class UserRef:
    user_id: str
    display_name: str
    account_created_at: int | None = None  # epoch seconds, when the platform knows
    locale: str | None = None

    def __post_init__(self) -> None:
        # Whatever the platform sent, the name the bot stores and shows is neutralised here,
        # once, for every adapter: no lone surrogate, NUL or bidi override gets further.
        object.__setattr__(self, "display_name", clean_name(self.display_name))


@dataclass(frozen=True, slots=True)
class MemberJoined:
    community: CommunityRef
    user: UserRef
    source: JoinSource = JoinSource.UNKNOWN
    code: str | None = None  # for INVITE_LINK and TYPED_CODE
    candidates: tuple[str, ...] = ()  # codes that could explain an AMBIGUOUS join
    roles: tuple[str, ...] = ()
    rejoined: bool = False  # the platform says this person was a member before (never a referral)
    quiet: bool = False  # recorded without greetings (joins found late, after downtime)
    joined_at: int | None = None  # epoch seconds, when the platform says (a join found late)


@dataclass(frozen=True, slots=True)
class MemberLeft:
    community: CommunityRef
    user_id: str


@dataclass(frozen=True, slots=True)
class MessagePosted:
    """Counted, never stored: only who posted where."""

    community: CommunityRef
    user: UserRef
    roles: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class RolesChanged:
    community: CommunityRef
    user_id: str
    roles: tuple[str, ...] = field(default_factory=tuple)
