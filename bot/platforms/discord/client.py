"""The discord.py client: intents, sharding, and event methods that forward to the platform."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord

from bot.platforms.discord.buttons import CommandButton

if TYPE_CHECKING:
    from bot.platforms.discord.platform import DiscordPlatform
    from config.settings import DiscordSettings


def invite_permissions(*, invite_events: bool = False) -> discord.Permissions:
    """What the bot's invite URL asks for (docs/discord.md shows this integer).

    ``invite_events`` adds Manage Channels: only with it does Discord send the bot
    INVITE_CREATE and INVITE_DELETE, which keep the invite cache fresh between fetches.
    """
    return discord.Permissions(
        view_channel=True,  # see the channels it posts in
        send_messages=True,  # welcomes, announcements, notices
        embed_links=True,  # link previews in announcements
        create_instant_invite=True,  # personal invites
        manage_guild=True,  # read invite uses (attribution), delete invites of leavers
        manage_roles=True,  # role rewards
        manage_channels=invite_events,
    )


def intents(members: bool = True) -> discord.Intents:
    """Guilds, members (privileged), invites, guild messages; never message content."""
    i = discord.Intents.none()
    i.guilds = True
    i.members = members
    i.invites = True
    i.guild_messages = True
    return i


def shard_options(settings: DiscordSettings) -> dict[str, Any]:
    """AutoShardedClient arguments: explicit shards, or Discord's recommended count."""
    ids = [int(x) for x in settings.shard_ids]
    if ids and settings.shard_count <= 0:
        raise ValueError("discord.shard_ids needs discord.shard_count (the total of all processes)")
    if any(not 0 <= x < settings.shard_count for x in ids):
        raise ValueError(f"discord.shard_ids must be from 0 to {settings.shard_count - 1}")
    options: dict[str, Any] = {}
    if settings.shard_count > 0:
        options["shard_count"] = settings.shard_count
    if ids:
        options["shard_ids"] = ids
    return options


class ReferralClient(discord.AutoShardedClient):
    """One process may run several shards; with no shard settings Discord recommends a count."""

    def __init__(self, platform: DiscordPlatform, members: bool, **options: Any) -> None:
        super().__init__(
            intents=intents(members),
            allowed_mentions=discord.AllowedMentions.none(),
            chunk_guilds_at_startup=members,
            **options,
        )
        self.platform = platform
        self.button_runner = platform.interactions

    async def setup_hook(self) -> None:
        self.add_dynamic_items(CommandButton)
        await self.platform.sync_commands()

    async def on_ready(self) -> None:
        await self.platform.ready()

    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self.platform.guild_ready(guild)

    async def on_guild_available(self, guild: discord.Guild) -> None:
        await self.platform.guild_available(guild)

    async def on_guild_role_update(self, before: discord.Role, after: discord.Role) -> None:
        await self.platform.permissions_changed(after.guild)

    async def on_guild_role_create(self, role: discord.Role) -> None:
        await self.platform.permissions_changed(role.guild)

    async def on_guild_role_delete(self, role: discord.Role) -> None:
        await self.platform.permissions_changed(role.guild)

    async def on_member_join(self, member: discord.Member) -> None:
        await self.platform.member_joined(member)

    async def on_raw_member_remove(self, payload: discord.RawMemberRemoveEvent) -> None:
        await self.platform.member_left(payload.guild_id, payload.user.id)

    async def on_member_update(self, before: discord.Member, after: discord.Member) -> None:
        if before.roles != after.roles:
            if self.user is not None and after.id == self.user.id:
                await self.platform.permissions_changed(after.guild)
            else:
                await self.platform.roles_changed(after)

    async def on_message(self, message: discord.Message) -> None:
        self.platform.message_posted(message)

    async def on_invite_create(self, invite: discord.Invite) -> None:
        self.platform.tracker.invite_created(invite)

    async def on_invite_delete(self, invite: discord.Invite) -> None:
        guild = invite.guild
        if isinstance(guild, discord.Guild):
            await self.platform.tracker.invite_deleted(guild, invite.code)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        if interaction.type == discord.InteractionType.application_command:
            await self.platform.interactions.command(interaction)
        elif interaction.type == discord.InteractionType.autocomplete:
            await self.platform.interactions.autocomplete(interaction)
        elif interaction.type == discord.InteractionType.modal_submit:
            await self.platform.interactions.modal_submitted(interaction)
