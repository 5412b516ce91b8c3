"""What user-provided text may contain before anything stores or repeats it."""

from __future__ import annotations

import unicodedata

from bot.engine.errors import UserError


def check_text(field: str, raw: str, max_len: int, *, multiline: bool = False) -> str:
    """Trimmed text, or a UserError naming the field: empty, too long, or control characters."""
    text = raw.strip()
    if not text:
        raise UserError("input.empty", field=field)
    if len(text) > max_len:
        raise UserError("input.too_long", field=field, max=max_len, length=len(text))
    allowed = {"\n", "\u200d"} if multiline else {"\u200d"}  # ZWJ joins emoji
    for ch in text:
        if ch not in allowed and unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co"):
            raise UserError("input.control_chars", field=field)
    return text
