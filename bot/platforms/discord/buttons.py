"""Buttons that run a command line as whoever presses them, and survive restarts.

A button's custom_id is ``rb:<command line>``. It is a ``DynamicItem``: discord.py rebuilds it
from the custom_id alone, so buttons on messages sent before a restart keep working once the
client registers the class (``add_dynamic_items`` in ``setup_hook``). Views never time out.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import discord

log = logging.getLogger(__name__)

PREFIX = "rb:"
MAX_CUSTOM_ID = 100
MAX_LABEL = 80


class ButtonRunner(Protocol):
    async def press(self, interaction: discord.Interaction, line: str) -> None: ...


class CommandButton(discord.ui.DynamicItem[discord.ui.Button], template=r"rb:(?P<line>.+)"):
    def __init__(self, line: str, label: str = "…") -> None:
        super().__init__(
            discord.ui.Button(
                label=label[:MAX_LABEL] or "…",
                custom_id=PREFIX + line,
                style=discord.ButtonStyle.secondary,
            )
        )
        self.line = line

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: Any
    ) -> CommandButton:
        label = getattr(item, "label", None) or "…"
        return cls(match["line"], label)

    async def callback(self, interaction: discord.Interaction) -> None:
        runner: ButtonRunner | None = getattr(interaction.client, "button_runner", None)
        if runner is None:
            log.warning("event=discord.button_unhandled line=%s", self.line)
            return
        await runner.press(interaction, self.line)


def fits(line: str) -> bool:
    return 0 < len(PREFIX + line) <= MAX_CUSTOM_ID


def view_for(buttons: list[tuple[str, str]]) -> discord.ui.View | None:
    """A never-expiring view of (label, command line) buttons (at most 25)."""
    usable = [(label, line) for label, line in buttons if fits(line)]
    for _label, line in buttons:
        if not fits(line):
            log.warning("event=discord.button_too_long line=%s", line[:120])
    if not usable:
        return None
    view = discord.ui.View(timeout=None)
    for label, line in usable[:25]:
        view.add_item(CommandButton(line, label))
    return view
