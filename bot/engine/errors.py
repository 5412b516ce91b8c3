"""Typed domain errors. They carry a catalog key and values, never a sentence."""

from __future__ import annotations

from typing import Any

from bot.engine.text import Text


class UserError(Exception):
    """Something the user asked for cannot be done; the message explains why.

    Raised before anything is written, so the command layer can render it and stop.
    """

    def __init__(self, key: str, **values: Any) -> None:
        super().__init__(key)
        self.text = Text(key, values)

    @property
    def key(self) -> str:
        return self.text.key
