"""The console platform: a community in your terminal, for trying the bot with no token.

You act as any number of members. Everything the bot says is printed as
``[bot -> #<community>] …`` or ``[bot -> @<user> (private)] …``; scenarios read the same lines.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.engine.admin import Actor
from bot.engine.context import Capabilities
from bot.engine.errors import UserError
from bot.engine.events import (
    CommunityRef,
    JoinSource,
    MemberJoined,
    MemberLeft,
    MessagePosted,
    UserRef,
)
from bot.engine.models import Community, OutboxItem, OutboxRoute
from bot.engine.text import Text, from_json
from bot.platforms.base import DeliveryError
from commands import dispatch
from commands.registry import CommandContext, Reply, split_command

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)
PLATFORM = "console"


def escape(text: str) -> str:
    """Terminal-safe: control characters (escape sequences, bells, line tricks) become visible."""
    return "".join(
        ch if ch == "\n" or unicodedata.category(ch) not in ("Cc", "Cf") else f"\\u{ord(ch):04x}"
        for ch in text
    )


@dataclass
class ConsoleCommunity:
    name: str
    program: str | None = None  # console communities named with the same program share it
    members: set[str] = field(default_factory=set)
    roles: dict[str, set[str]] = field(default_factory=dict)

    @property
    def ref(self) -> CommunityRef:
        return CommunityRef(PLATFORM, self.name, self.name)


class ConsolePlatform:
    name = PLATFORM
    capabilities = Capabilities(
        roles=True,
        buttons=False,
        dms=True,
        dms_intrusive=False,
        account_age=True,
        channel_access=False,
    )

    def __init__(self, out: Callable[[str], None] = print) -> None:
        self.out = out
        self.app: App | None = None
        self.communities: dict[str, ConsoleCommunity] = {}
        self.default: str | None = None
        self.delivered_keys: set[str] = set()
        self.last_link_token: str | None = None  # the latest /link-program token shown

    # -- Platform protocol ------------------------------------------------------------------

    async def start(self, app: App) -> None:
        self.app = app

    async def stop(self) -> None:
        self.app = None

    async def create_referral_link(self, community: Community, code: str) -> str:
        return f"console://join/{code}"

    async def revoke_referral_link(self, community_id: str, url: str) -> None:
        self.out(f"[bot -> #{community_id}] (link {escape(url)} revoked)")

    def route(self) -> OutboxRoute:
        """This process delivers the outbox items of its own console communities only."""
        return OutboxRoute(communities=frozenset(self.communities))

    def render(self, text: Text, locale: str = "en") -> str:
        assert self.app is not None
        return self.app.catalog.render(text, locale, escape, lambda m: "@" + escape(m.name))

    async def deliver(self, item: OutboxItem) -> None:
        if item.dedupe_key in self.delivered_keys:
            return  # a redelivery after a crash: already shown
        p = item.payload
        community = self.communities.get(p["community"])
        if community is None:
            raise DeliveryError(f"unknown console community {p['community']!r}", retryable=False)
        if item.kind == "message":
            where = f"#{community.name}" + (f"/{p['channel']}" if p.get("channel") else "")
            text = self.render(from_json(p["text"]), p["locale"])
            for button in p.get("buttons", []):
                label = self.render(from_json(button["label"]), p["locale"])
                text += f"\n  [{label}: /{button['command']}]"
            self.out(f"[bot -> {where}] {text}")
        elif item.kind == "dm":
            text = self.render(from_json(p["text"]), p["locale"])
            self.out(f"[bot -> @{escape(p['user'])} (private)] {text}")
        elif item.kind in ("grant_role", "revoke_role"):
            roles = community.roles.setdefault(p["user"], set())
            if item.kind == "grant_role":
                roles.add(p["role"])
                self.out(f"[bot -> #{community.name}] (role {p['role']} given to @{p['user']})")
            else:
                roles.discard(p["role"])
                self.out(f"[bot -> #{community.name}] (role {p['role']} taken from @{p['user']})")
        else:
            raise DeliveryError(f"unknown outbox kind {item.kind!r}", retryable=False)
        self.delivered_keys.add(item.dedupe_key)

    # -- acting as members ------------------------------------------------------------------

    def community(self, name: str | None) -> ConsoleCommunity:
        key = name or self.default
        if key is None or key not in self.communities:
            raise UserError("console.unknown_community", name=key or "-")
        return self.communities[key]

    async def add_community(self, name: str, program: str | None = None) -> ConsoleCommunity:
        assert self.app is not None
        if name in self.communities:
            raise UserError("console.community_exists", name=name)
        community = ConsoleCommunity(name)
        self.communities[name] = community
        self.default = self.default or name
        await self.app.engine.community(community.ref)
        if program is not None:
            await self._join_program(community, program)
        return community

    async def _join_program(self, community: ConsoleCommunity, program: str) -> None:
        """Communities named with the same program share one (linked with a one-time token)."""
        assert self.app is not None
        engine = self.app.engine
        first = next(
            (c for c in self.communities.values() if c is not community and c.program == program),
            None,
        )
        community.program = program
        if first is None:
            return
        console = Actor("console", "console")
        token = await engine.link_token(first.ref, console)
        await engine.link_program(community.ref, console, token)

    def user(self, name: str, age_days: int | None = None) -> UserRef:
        assert self.app is not None
        created = None
        if age_days is not None:
            created = self.app.clock.now() - age_days * 86400
        return UserRef(name.lower(), name, created)

    async def join(
        self,
        user: str,
        community: str | None = None,
        via: str | None = None,
        code: str | None = None,
        age_days: int | None = None,
    ) -> None:
        assert self.app is not None
        c = self.community(community)
        c.members.add(user.lower())
        source, used = JoinSource.ORGANIC, None
        if via is not None:
            used = await self.code_of(via, community)
            source = JoinSource.INVITE_LINK if used is not None else JoinSource.ORGANIC
        elif code is not None:
            source, used = JoinSource.TYPED_CODE, code
        await self.app.engine.member_joined(
            MemberJoined(
                c.ref,
                self.user(user, age_days),
                source,
                used,
                roles=tuple(sorted(c.roles.get(user.lower(), ()))),
            )
        )

    async def code_of(self, member: str, community: str | None = None) -> str | None:
        """The code behind ``member``'s personal link: made if needed; for someone the bot
        refuses a link (banned), the last one they had, which still exists on a platform.

        It comes from a community the member is in (codes are per program).
        """
        assert self.app is not None
        c = self.community(community)
        home = next((x for x in (c, *self.communities.values()) if member.lower() in x.members), c)
        try:
            info = await self.app.engine.invite(
                home.ref, self.user(member), self.create_referral_link
            )
        except UserError:
            return await self.app.engine.last_code(home.ref, self.user(member))
        return info.code

    async def leave(self, user: str, community: str | None = None) -> None:
        assert self.app is not None
        c = self.community(community)
        c.members.discard(user.lower())
        await self.app.engine.member_left(MemberLeft(c.ref, user.lower()))

    async def set_role(self, user: str, role: str, community: str | None = None) -> None:
        assert self.app is not None
        c = self.community(community)
        roles = c.roles.setdefault(user.lower(), set())
        roles.add(role.lower() if role.lower() in ("admin", "moderator") else role)
        await self.app.engine.roles_changed(c.ref, user.lower(), tuple(sorted(roles)))

    async def say(self, user: str, text: str, community: str | None = None) -> list[str]:
        """A member types a line: a /command is answered, anything else is a message."""
        assert self.app is not None
        c = self.community(community)
        roles = tuple(sorted(c.roles.get(user.lower(), ())))
        if not text.startswith("/"):
            self.app.engine.message_posted(MessagePosted(c.ref, self.user(user), roles))
            return []
        name, tokens = split_command(text[1:])
        ctx = CommandContext(
            engine=self.app.engine,
            community=c.ref,
            user=self.user(user),
            roles=roles,
            is_admin="admin" in roles,
            is_moderator="moderator" in roles,
            make_link=self.create_referral_link,
            capabilities=self.capabilities,
        )
        lines = [self._reply_line(c, user, r) for r in await dispatch(ctx, name or "help", tokens)]
        for line in lines:
            self.out(line)
        return lines

    def _reply_line(self, community: ConsoleCommunity, user: str, reply: Reply) -> str:
        if reply.text.key == "admin.link_token":  # scenarios type it as {link-token}
            self.last_link_token = str(reply.text.values["token"])
        text = self.render(reply.text)
        for label, command in reply.buttons:
            text += f"\n  [{self.render(label)}: /{command}]"
        if reply.private:
            return f"[bot -> @{escape(user.lower())} (private)] {text}"
        return f"[bot -> #{community.name}] {text}"
