"""What user-provided text may contain before anything stores or repeats it."""

from __future__ import annotations

import unicodedata

from bot.engine.errors import UserError

# Format characters that belong to real writing, accepted in admin texts: the zero-width
# joiner (emoji sequences) and non-joiner (Persian, Indic scripts), the directional marks
# LRM, RLM and ALM, the soft hyphen, and the tag characters of emoji flag sequences.
# Everything else of category Cf (bidi overrides and isolates such as U+202E, zero-width
# spaces, the BOM) can disguise text and is refused.
_WRITING = frozenset("\u200d\u200c\u200e\u200f\u061c\u00ad")
_TAGS = range(0xE0020, 0xE0080)
# Never stored, never shown, wherever a name comes from: bidi embeddings, overrides and
# isolates (they reorder what follows them, e.g. in an audit line).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
MAX_NAME = 100  # a display name as the bot stores and shows it


def _writing(ch: str) -> bool:
    return ch in _WRITING or ord(ch) in _TAGS


def check_text(field: str, raw: str, max_len: int, *, multiline: bool = False) -> str:
    """Trimmed text, or a UserError naming the field: empty, too long, or control characters."""
    text = raw.strip()
    if not text:
        raise UserError("input.empty", field=field)
    if len(text) > max_len:
        raise UserError("input.too_long", field=field, max=max_len, length=len(text))
    for ch in text:
        if ch == "\n" and multiline:
            continue
        category = unicodedata.category(ch)
        if category in ("Cc", "Cs", "Co") or (category == "Cf" and not _writing(ch)):
            raise UserError("input.control_chars", field=field)
    return text


def clean_name(raw: str, max_len: int = MAX_NAME) -> str:
    """A display name from a platform, safe to store and show.

    Lone surrogates and control characters (NUL, escapes, newlines) become U+FFFD; bidi
    overrides and isolates and other invisible format characters are dropped; the name is
    cut to ``max_len`` characters. Writing that needs format characters (ZWNJ, LRM/RLM,
    emoji tags) is kept.
    """
    out = []
    for ch in raw:
        category = unicodedata.category(ch)
        if category in ("Cc", "Cs"):
            out.append("\ufffd")
        elif ch not in _BIDI_CONTROLS and (category != "Cf" or _writing(ch)):
            out.append(ch)
    return "".join(out).strip()[:max_len]


def printable(raw: str, max_len: int = 60) -> str:
    """Text kept for the record only (a wrong code): control characters made visible."""
    return "".join(
        f"\\u{ord(ch):04x}" if unicodedata.category(ch) in ("Cc", "Cf", "Cs") else ch
        for ch in raw[:max_len]
    )[:max_len]
