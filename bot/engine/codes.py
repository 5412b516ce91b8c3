"""Personal referral codes: unguessable, readable aloud, forgiving on entry.

Ten characters from a 31-symbol alphabet with no look-alikes (no 0/O, 1/I/L) give
10 * log2(31) = 49.5 bits of entropy. Codes are shown as ``ABCDE-FGHJK`` and accepted in
any case, with or without spaces and dashes, as people paste them: full-width letters and
any Unicode dash fold to the plain form (NFKC), and a pasted personal link gives its code.
"""

from __future__ import annotations

import math
import re
import secrets
import unicodedata
from urllib.parse import parse_qs, urlsplit

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
LENGTH = 10
ENTROPY_BITS = LENGTH * math.log2(len(ALPHABET))
# Spaces, dots, underscores and every dash (hyphen, en/em dash, minus, ...) NFKC leaves as is.
_SEPARATORS = re.compile(r"[\s\-_.\u2010-\u2015\u2212\u2043\u30fc\ufe58]+")
_LINK = re.compile(r"^(?:[a-z][a-z0-9+.\-]*://|(?:www\.)?[\w\-]+(?:\.[\w\-]+)+/)", re.IGNORECASE)
MAX_ENTRY = 200  # longer than any code or personal link: malformed
_VALID = re.compile(f"^[{ALPHABET}]{{{LENGTH}}}$")


_SPACE = len(ALPHABET) ** LENGTH


def generate() -> str:
    """One uniform draw from the whole code space, written in the code alphabet."""
    n = secrets.randbelow(_SPACE)
    out = []
    for _ in range(LENGTH):
        n, digit = divmod(n, len(ALPHABET))
        out.append(ALPHABET[digit])
    return "".join(out)


def normalize(entered: str) -> str | None:
    """The canonical form of a typed code, or None when it cannot be a code at all."""
    candidate = _SEPARATORS.sub("", unicodedata.normalize("NFKC", entered)).upper()
    return candidate if _VALID.match(candidate) else None


def malformed(entered: str) -> bool:
    """Too long to be a code or a link, or carrying control/format characters."""
    return len(entered) > MAX_ENTRY or any(
        unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") for ch in entered
    )


def link_forms(entered: str) -> list[str]:
    """The ways a pasted link may have been stored (with or without its scheme), or []."""
    text = unicodedata.normalize("NFKC", entered).strip().strip("<>").rstrip("/")
    if not _LINK.match(text):
        return []
    if "://" in text:
        return [text, text + "/"]
    return [f"https://{text}", f"http://{text}", text]


def code_in_link(link: str) -> str | None:
    """A code carried in a link's own text: ``?start=CODE`` (Telegram) or its last segment."""
    parts = urlsplit(link if "://" in link else f"https://{link}")
    for value in parse_qs(parts.query).get("start", []):
        if (code := normalize(value)) is not None:
            return code
    last = parts.path.rstrip("/").rsplit("/", 1)[-1]
    return normalize(last) if last else None


def display(code: str) -> str:
    half = LENGTH // 2
    return f"{code[:half]}-{code[half:]}"
