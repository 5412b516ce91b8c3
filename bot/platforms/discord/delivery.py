"""Outbox items -> Discord: channel messages, DMs, role grants and revocations.

A failure raises DeliveryError: retryable when waiting can help (Discord 5xx, not connected
yet), not retryable when nothing will (a missing channel, a member who blocks DMs). A role
reward blocked by something an admin can fix (a deleted role, missing Manage Roles, a role above
the bot's) *waits*: retryable without using up attempts, re-checked every ``ROLE_RECHECK``
seconds and at once when roles or permissions change or an admin runs /check. The admins are
told once what to fix; the member's "you now have the role" message waits for the role too.
Problems an admin must fix are logged and listed by /check, so no failure is silent.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import discord

from bot.engine.models import OutboxItem
from bot.engine.text import Text, from_json, t
from bot.platforms.base import DeliveryError
from bot.platforms.discord.buttons import view_for
from bot.platforms.discord.render import Rendered, render
from config.i18n import Catalog

log = logging.getLogger(__name__)

Problem = Callable[[int, Text], None]  # (guild id, what an admin must fix)
# (guild, what to fix, notice key): tell the admins once; None text: fixed, forget the notice
RoleNotice = Callable[[discord.Guild, Text | None, str], Awaitable[None]]

ROLE_RECHECK = 900  # seconds between re-checks of a role reward that waits for a fix
ROLE_SOON = 5  # seconds: a "you now have the role" message whose role is about to be given
WAITING = "waiting for an admin: "  # last_error prefix of items that wait for a fix
ROLE_KINDS = ("grant_role", "revoke_role", "dm")


def find_channel(guild: discord.Guild, name: str | None) -> discord.TextChannel | None:
    """A text channel by name (``#`` and case ignored), or the default one for None."""
    if name:
        wanted = name.lstrip("#").strip().lower()
        by_id = guild.get_channel(int(wanted)) if wanted.isdigit() else None
        if isinstance(by_id, discord.TextChannel):
            return by_id
        return next((c for c in guild.text_channels if c.name.lower() == wanted), None)
    if guild.system_channel is not None:
        return guild.system_channel
    me = guild.me
    return next((c for c in guild.text_channels if c.permissions_for(me).send_messages), None)


def find_role(guild: discord.Guild, name: str) -> discord.Role | None:
    exact = discord.utils.get(guild.roles, name=name)
    if exact is not None:
        return exact
    wanted = name.strip().lower()
    return next((r for r in guild.roles if r.name.lower() == wanted), None)


def role_problem(guild: discord.Guild, role: discord.Role) -> Text | None:
    """Why the bot cannot give or take this role, or None."""
    me = guild.me
    if not me.guild_permissions.manage_roles:
        return t("check.discord.manage_roles", role=role.name)
    if role.managed or role.is_default():
        return t("check.discord.role_managed", role=role.name)
    if role >= me.top_role:
        return t("check.discord.role_above", role=role.name, bot_role=me.top_role.name)
    return None


def message_nonce(dedupe_key: str, chunk: int) -> str:
    """The same nonce for every send of one outbox item's chunk: discord.py sends it with
    ``enforce_nonce``, so Discord drops a repeat (a retry after a lost response) made within
    a few minutes instead of posting the message twice. At most 25 characters."""
    return hashlib.sha256(f"{dedupe_key}#{chunk}".encode()).hexdigest()[:25]


class Deliverer:
    def __init__(
        self,
        client: discord.Client,
        catalog: Callable[[], Catalog],
        problem: Problem,
        role_notice: RoleNotice | None = None,
    ) -> None:
        self.client = client
        self.catalog = catalog
        self.problem = problem
        self.role_notice = role_notice
        self.delivered: set[str] = set()  # dedupe keys sent by this process

    def _render(self, payload: dict[str, Any]) -> tuple[Rendered, discord.ui.View | None]:
        locale = payload.get("locale") or "en"
        rendered = render(self.catalog(), from_json(payload["text"]), locale)
        buttons = [
            (render(self.catalog(), from_json(b["label"]), locale).text, str(b["command"]))
            for b in payload.get("buttons") or []
        ]
        return rendered, view_for(buttons)

    def _guild(self, payload: dict[str, Any]) -> discord.Guild:
        if not self.client.is_ready():
            raise DeliveryError("discord is not connected yet", retry_after=5)
        guild_id = int(payload["community"])
        guild = self.client.get_guild(guild_id)
        if guild is None:
            if not self._our_shard(guild_id):  # another process runs that guild's shard
                raise DeliveryError(
                    f"guild {guild_id} is on another shard", retry_after=1, counts_as_attempt=False
                )
            raise DeliveryError(f"the bot is not in guild {guild_id}", retryable=False)
        return guild

    def _our_shard(self, guild_id: int) -> bool:
        ids = getattr(self.client, "shard_ids", None)
        count = getattr(self.client, "shard_count", None) or 1
        return ids is None or (guild_id >> 22) % count in ids

    async def deliver(self, item: OutboxItem) -> None:
        if item.dedupe_key in self.delivered:
            return
        p = item.payload
        try:
            if item.kind == "message":
                await self._message(p, item.dedupe_key)
            elif item.kind == "dm":
                await self._dm(p, item.dedupe_key)
            elif item.kind in ("grant_role", "revoke_role"):
                await self._role(p, grant=item.kind == "grant_role")
            else:
                raise DeliveryError(f"discord cannot deliver {item.kind!r}", retryable=False)
        except discord.HTTPException as exc:
            if exc.status >= 500:
                raise DeliveryError(f"discord {exc.status}: {exc.text}") from exc
            raise DeliveryError(f"discord {exc.status}: {exc.text}", retryable=False) from exc
        self.delivered.add(item.dedupe_key)

    async def _message(self, p: dict[str, Any], key: str) -> None:
        guild = self._guild(p)
        channel = find_channel(guild, p.get("channel"))
        name = p.get("channel") or "-"
        if channel is None:
            self.problem(guild.id, t("check.discord.channel_missing", channel=name))
            raise DeliveryError(f"no channel {name!r} in guild {guild.id}", retryable=False)
        perms = channel.permissions_for(guild.me)
        if not (perms.view_channel and perms.send_messages):
            self.problem(guild.id, t("check.discord.channel_unwritable", channel=channel.name))
            raise DeliveryError(f"cannot send in #{channel.name}", retryable=False)
        rendered, view = self._render(p)
        chunks = rendered.chunks()
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            kwargs: dict[str, Any] = {
                "allowed_mentions": rendered.allowed_mentions,
                "nonce": message_nonce(key, i),
            }
            if last and view is not None:
                kwargs["view"] = view
            await channel.send(chunk, **kwargs)

    async def _dm(self, p: dict[str, Any], key: str) -> None:
        if not self.client.is_ready():
            raise DeliveryError("discord is not connected yet", retry_after=5)
        self._role_told_only_once_given(p)
        user_id = int(p["user"])
        user = self.client.get_user(user_id)
        try:
            if user is None:
                user = await self.client.fetch_user(user_id)
            rendered, _view = self._render(p)
            for i, chunk in enumerate(rendered.chunks()):
                await user.send(
                    chunk, allowed_mentions=rendered.allowed_mentions, nonce=message_nonce(key, i)
                )
        except discord.Forbidden as exc:  # DMs closed, or no shared guild
            raise DeliveryError(f"user {user_id} does not accept DMs", retryable=False) from exc
        except discord.NotFound as exc:
            raise DeliveryError(f"unknown user {user_id}", retryable=False) from exc

    def _role_told_only_once_given(self, p: dict[str, Any]) -> None:
        """A "you now have the role" message waits until the member really has the role."""
        text = from_json(p["text"])
        if not isinstance(text, Text) or text.key != "dm.reward_role":
            return
        guild = self.client.get_guild(int(p["community"]))
        member = guild.get_member(int(p["user"])) if guild is not None else None
        if guild is None or member is None:
            return  # not a member there now: nothing to wait for
        name = str(text.values.get("role", ""))
        role = find_role(guild, name)
        if role is not None and role in member.roles:
            return
        blocked = role is None or role_problem(guild, role) is not None
        raise DeliveryError(
            f"{WAITING}role {name!r} not given yet",
            retry_after=ROLE_RECHECK if blocked else ROLE_SOON,
            counts_as_attempt=False,
        )

    async def _blocked(self, guild: discord.Guild, problem: Text, role: str) -> DeliveryError:
        """Record and tell what blocks a role; the error that makes the item wait."""
        self.problem(guild.id, problem)
        log.warning(
            "event=discord.role_blocked guild=%s role=%s problem=%s", guild.id, role, problem.key
        )
        if self.role_notice is not None:
            await self.role_notice(guild, problem, f"role:{role}")
        return DeliveryError(
            f"{WAITING}cannot manage role {role!r} ({problem.key})",
            retry_after=ROLE_RECHECK,
            counts_as_attempt=False,
        )

    async def _role(self, p: dict[str, Any], *, grant: bool) -> None:
        guild = self._guild(p)
        role = find_role(guild, str(p["role"]))
        if role is None:
            raise await self._blocked(
                guild, t("check.discord.role_missing", role=p["role"]), p["role"]
            )
        problem = role_problem(guild, role)
        if problem is not None:
            raise await self._blocked(guild, problem, str(p["role"]))
        member = guild.get_member(int(p["user"]))
        if member is None:
            try:
                member = await guild.fetch_member(int(p["user"]))
            except discord.NotFound as exc:
                raise DeliveryError("the member left the guild", retryable=False) from exc
        try:
            if grant and role not in member.roles:
                await member.add_roles(role, reason="referral reward")
            elif not grant and role in member.roles:
                await member.remove_roles(role, reason="referral reward revoked")
        except discord.Forbidden as exc:  # hierarchy or permissions changed under us
            problem = role_problem(guild, role) or t(
                "check.discord.role_above", role=role.name, bot_role=guild.me.top_role.name
            )
            raise await self._blocked(guild, problem, str(p["role"])) from exc
        if self.role_notice is not None:
            await self.role_notice(guild, None, f"role:{p['role']}")
