"""Personal referral codes: unguessable, readable aloud, forgiving on entry.

Ten characters from a 31-symbol alphabet with no look-alikes (no 0/O, 1/I/L) give
10 * log2(31) = 49.5 bits of entropy. Codes are shown as ``ABCDE-FGHJK`` and accepted in
any case, with or without spaces and dashes.
"""

from __future__ import annotations

import math
import re
import secrets

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
LENGTH = 10
ENTROPY_BITS = LENGTH * math.log2(len(ALPHABET))
_SEPARATORS = re.compile(r"[\s\-_.]+")
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
    candidate = _SEPARATORS.sub("", entered).upper()
    return candidate if _VALID.match(candidate) else None


def display(code: str) -> str:
    half = LENGTH // 2
    return f"{code[:half]}-{code[half:]}"
