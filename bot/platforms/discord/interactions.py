"""Slash commands, autocomplete and button presses -> the neutral command dispatcher."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord

from bot.engine.models import GrantStatus
from bot.engine.text import t
from bot.platforms.discord.buttons import view_for
from bot.platforms.discord.render import render
from bot.platforms.discord.slash import read_invocation, usage_on_discord
from commands import dispatch
from commands.registry import CommandContext, Reply, split_command

if TYPE_CHECKING:
    from bot.platforms.discord.platform import DiscordPlatform

log = logging.getLogger(__name__)

# Discord wants a first response within 3 s. Commands known to be slow (REST calls, big reads)
# defer at once; any other defers if it has not answered within ANSWER_WITHIN.
ANSWER_WITHIN = 1.0
SLOW = frozenset({"invite", "check", "leaderboard", "program", "coupons-add", "link-program"})
# Commands whose answer is posted for the whole channel (their deferral is public too).
PUBLIC = frozenset({"rules", "leaderboard"})
# Settings typed as long, multi-line texts: /referral-admin set without a value opens a modal.
LONG_TEXTS = {"welcome-text": 1000, "rules-text": 2000}
MODAL_PREFIX = "rbm:set:"


def member_roles(member: discord.Member) -> tuple[str, ...]:
    return tuple(sorted(r.name for r in member.roles if not r.is_default()))


def permissions_of(member: discord.Member) -> tuple[bool, bool]:
    """(is_admin, is_moderator) from the member's real guild permissions."""
    p = member.guild_permissions
    admin = p.administrator or p.manage_guild
    moderator = p.manage_messages or p.moderate_members or p.kick_members or p.ban_members
    return admin, moderator


def locale_of(interaction: discord.Interaction) -> str:
    return str(interaction.locale.value).split("-")[0].lower() or "en"


class Interactions:
    def __init__(self, platform: DiscordPlatform) -> None:
        self.platform = platform

    def context(self, interaction: discord.Interaction) -> CommandContext | None:
        p = self.platform
        guild, member = interaction.guild, interaction.user
        if p.app is None or guild is None or not isinstance(member, discord.Member):
            return None
        is_admin, is_moderator = permissions_of(member)
        ref = p.ref(guild)
        user = p.user_ref(member, locale_of(interaction))
        return CommandContext(
            engine=p.app.engine,
            community=ref,
            user=user,
            roles=member_roles(member),
            is_admin=is_admin,
            is_moderator=is_moderator,
            make_link=p.create_referral_link,
            capabilities=p.capabilities,
            diagnose=lambda: p.diagnose(guild),
            usage_of=usage_on_discord,
        )

    async def command(self, interaction: discord.Interaction) -> None:
        ctx = self.context(interaction)
        if ctx is None:
            await interaction.response.send_message(
                self._text(t("discord.guild_only")), ephemeral=True
            )
            return
        inv = read_invocation(dict(interaction.data or {}))
        setting = str(inv.named.get("setting") or "").strip().lower()
        wants_box = inv.command == "set" and inv.named.get("value") is None
        if wants_box and setting in LONG_TEXTS and ctx.is_admin:
            await self._long_text_modal(interaction, ctx, setting)
            return

        async def run() -> list[Reply]:
            await self._join_recorded(interaction)
            return await dispatch(ctx, inv.command, named=inv.named)

        await self._answer(interaction, run, inv.command)

    async def _long_text_modal(
        self, interaction: discord.Interaction, ctx: CommandContext, setting: str
    ) -> None:
        """A paragraph box as long as the setting allows, filled with the current text."""
        current = ""
        try:
            s, _tiers = await ctx.engine.rules(ctx.community)
            current = (s.welcome_text if setting == "welcome-text" else s.rules_text) or ""
        except Exception:
            log.exception("event=discord.modal_prefill_failed setting=%s", setting)
        locale = locale_of(interaction)
        modal = discord.ui.Modal(
            title=self._text(t("discord.modal.title", setting=setting), locale)[:45],
            custom_id=MODAL_PREFIX + setting,
            timeout=900,  # the submission is handled from its custom id, not this object
        )
        modal.add_item(
            discord.ui.TextInput(
                label=self._text(t("discord.modal.label", setting=setting), locale)[:45],
                custom_id="value",
                style=discord.TextStyle.paragraph,
                max_length=LONG_TEXTS[setting],
                default=current[: LONG_TEXTS[setting]] or None,
                required=True,
            )
        )
        await interaction.response.send_modal(modal)

    async def modal_submitted(self, interaction: discord.Interaction) -> None:
        """A long text typed in the modal: saved through the same ``set`` as a typed value."""
        data = dict(interaction.data or {})
        custom_id = str(data.get("custom_id", ""))
        ctx = self.context(interaction)
        if ctx is None or not custom_id.startswith(MODAL_PREFIX):
            return
        setting = custom_id[len(MODAL_PREFIX) :]
        value = next(
            (
                str(c.get("value", ""))
                for row in data.get("components") or []
                for c in (row.get("components") or [row.get("component") or {}])
                if c.get("custom_id") == "value"
            ),
            "",
        )
        named = {"setting": setting, "value": value}
        await self._answer(interaction, lambda: dispatch(ctx, "set", named=named), "set")

    async def press(self, interaction: discord.Interaction, line: str) -> None:
        ctx = self.context(interaction)
        if ctx is None:
            return
        name, tokens = split_command(line)

        async def run() -> list[Reply]:
            await self._join_recorded(interaction)
            return await dispatch(ctx, name or "help", tokens)

        await self._answer(interaction, run, name or "help")

    async def _join_recorded(self, interaction: discord.Interaction) -> None:
        """A newcomer's first command waits for their join: it is recorded first, as a join."""
        if interaction.guild is not None:
            await self.platform.tracker.join_recorded(interaction.guild.id, interaction.user.id)

    async def _answer(
        self,
        interaction: discord.Interaction,
        run: Callable[[], Awaitable[list[Reply]]],
        command: str = "",
    ) -> None:
        """Answer within Discord's 3 s: slow work defers first and completes that same reply."""
        name = command.lower()
        task = asyncio.ensure_future(run())
        # A deferral's visibility is final: the reply that completes it can't be more private.
        # So a public command defers only once it is really late; a quick private refusal
        # ("slow down", a bad option) stays private.
        deferred = name in SLOW and name not in PUBLIC
        if not deferred:
            done, _ = await asyncio.wait({task}, timeout=ANSWER_WITHIN)
            deferred = not done
        if deferred:
            await interaction.response.defer(ephemeral=name not in PUBLIC, thinking=True)
        try:
            replies = await task
        except Exception:
            log.exception("event=discord.command_failed")
            replies = [Reply(t("discord.command_failed"), private=True)]
        if not replies:
            await self._acknowledge_silently(interaction, deferred)
            return
        locale = locale_of(interaction)
        first = not deferred
        for reply in replies:
            rendered = render(self.platform.catalog, reply.text, locale)
            buttons = [
                (render(self.platform.catalog, label, locale).text, line)
                for label, line in reply.buttons
            ]
            chunks = rendered.chunks()
            for i, chunk in enumerate(chunks):
                kwargs: dict[str, Any] = {"allowed_mentions": rendered.allowed_mentions}
                view = view_for(buttons) if i == len(chunks) - 1 else None
                if view is not None:
                    kwargs["view"] = view
                if first:
                    await interaction.response.send_message(
                        chunk, ephemeral=reply.private, **kwargs
                    )
                    first = False
                else:
                    # After a defer the first follow-up completes the deferred reply itself.
                    await interaction.followup.send(chunk, ephemeral=reply.private, **kwargs)

    async def _acknowledge_silently(self, interaction: discord.Interaction, deferred: bool) -> None:
        """No answer (a member over the command budget, dropped): still acknowledge the
        interaction, so the client does not show "interaction failed", and leave no message.

        A button press is acknowledged with a silent update (nothing is shown); a slash command
        can only be acknowledged with a private "thinking" reply, which is deleted at once.
        """
        try:
            if not deferred:
                if interaction.type == discord.InteractionType.component:
                    await interaction.response.defer()
                    return
                await interaction.response.defer(ephemeral=True)
            await interaction.delete_original_response()
        except discord.HTTPException:
            log.warning("event=discord.silent_ack_failed")

    async def autocomplete(self, interaction: discord.Interaction) -> None:
        ctx = self.context(interaction)
        inv = read_invocation(dict(interaction.data or {}))
        choices: list[str] = []
        if ctx is not None and inv.focused is not None:
            try:
                choices = await self._choices(ctx, inv.command, inv.typed)
            except Exception:
                log.exception("event=discord.autocomplete_failed command=%s", inv.command)
        await interaction.response.autocomplete(
            [discord.app_commands.Choice(name=c[:100], value=c[:100]) for c in choices[:25]]
        )

    async def _choices(self, ctx: CommandContext, command: str, typed: str) -> list[str]:
        engine, typed = ctx.engine, typed.strip().lower()
        if command == "redeem":
            info = await engine.status(ctx.community, ctx.user)
            names = [g.label for g in info.available if g.status == GrantStatus.AVAILABLE]
        elif command in ("tier-edit", "tier-remove") and ctx.is_admin:
            _settings, tiers = await engine.rules(ctx.community)
            names = [x.name for x in tiers]
        else:
            return []
        return [n for n in dict.fromkeys(names) if typed in n.lower()]

    def _text(self, text: Any, locale: str = "en") -> str:
        return render(self.platform.catalog, text, locale).text
