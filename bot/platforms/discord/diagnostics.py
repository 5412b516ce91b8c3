"""What the bot lacks in a guild, as catalog sentences that say how to fix each thing.

Used by admin /check (``CommandContext.diagnose``) and logged at start.
"""

from __future__ import annotations

import discord

from bot.engine.models import RewardKind
from bot.engine.service import ProgramOverview
from bot.engine.text import Text, t
from bot.platforms.discord.delivery import find_channel, find_role, role_problem


def _channel_checks(guild: discord.Guild, name: str | None, what: str) -> list[Text]:
    channel = find_channel(guild, name)
    if channel is None:
        if name:
            return [t("check.discord.channel_missing", channel=name)]
        return [t("check.discord.no_default_channel")]
    perms = channel.permissions_for(guild.me)
    if not (perms.view_channel and perms.send_messages):
        return [t("check.discord.channel_unwritable", channel=channel.name)]
    if what == "announce" and not perms.embed_links:
        return [t("check.discord.embed_links", channel=channel.name)]
    return []


def diagnose_guild(
    guild: discord.Guild,
    *,
    members_intent: bool,
    invite_channel: str,
    overview: ProgramOverview | None,
    community_id: int | None,
    recorded: list[Text],
) -> list[Text]:
    me = guild.me
    perms = me.guild_permissions
    problems: list[Text] = []
    if not members_intent:
        problems.append(t("check.discord.members_intent"))
    if not perms.manage_guild:
        problems.append(t("check.discord.manage_server"))
    if not perms.manage_roles:
        problems.append(t("check.discord.manage_roles_general"))
    invite_at = find_channel(guild, invite_channel or None)
    if invite_at is None:
        problems.append(t("check.discord.invite_channel_missing", channel=invite_channel or "-"))
    elif not invite_at.permissions_for(me).create_instant_invite:
        problems.append(t("check.discord.create_invite", channel=invite_at.name))
    if overview is not None:
        s = overview.settings
        here = s.announce_community_id in (None, community_id)
        problems += _channel_checks(guild, s.announce_channel if here else None, "announce")
        if s.admin_channel and s.admin_community_id == community_id:
            problems += _channel_checks(guild, s.admin_channel, "admin")
        roles = [x.reward_value for x in overview.tiers if x.reward_kind == RewardKind.ROLE]
        if s.referee_reward_kind == RewardKind.ROLE.value and s.referee_reward_value:
            roles.append(s.referee_reward_value)
        for name in dict.fromkeys(roles):
            role = find_role(guild, name)
            if role is None:
                problems.append(t("check.discord.role_missing", role=name))
            elif (problem := role_problem(guild, role)) is not None:
                problems.append(problem)
    for text in recorded:
        if text not in problems:
            problems.append(text)
    return problems


def still_true(guild: discord.Guild, problem: Text) -> Text | None:
    """A problem recorded by a failed delivery, checked again against the guild as it is now
    (so /check never repeats a stale memory); problems of other kinds are kept as they are."""
    key, values = problem.key, problem.values
    if "role" in values and (
        key.startswith("check.discord.role") or key == "check.discord.manage_roles"
    ):
        role = find_role(guild, str(values["role"]))
        if role is None:
            return t("check.discord.role_missing", role=values["role"])
        return role_problem(guild, role)
    if key in ("check.discord.channel_missing", "check.discord.channel_unwritable"):
        found = _channel_checks(guild, str(values["channel"]), "message")
        return found[0] if found else None
    return problem
