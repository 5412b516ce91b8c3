"""Deep links and invite-link names.

A deep link ``https://t.me/<bot>?start=<payload>`` arrives as ``/start <payload>`` in the
private chat. Payloads are at most 64 characters of ``A-Za-z0-9_-``:

- ``<CODE>_<chat id>``: someone's referral link for a group (public groups, where the "Join"
  button would lose the attribution): the bot answers with a single-use invite link named by
  the code, so the join itself carries the code.
- ``g<chat id>`` or ``g<chat id>_<command>``: "open the bot" from a group, optionally running a
  member command there (the pointer shown when the bot could not write to someone first).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NAME_LIMIT = 32  # createChatInviteLink name
PAYLOAD_LIMIT = 64
_PAYLOAD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_REFERRAL = re.compile(r"^([A-Za-z0-9]{4,32})_(-?\d{1,20})$")
_OPEN = re.compile(r"^g(-?\d{1,20})(?:_([a-z][a-z0-9_]{0,31}))?$")


@dataclass(frozen=True, slots=True)
class StartPayload:
    chat_id: int
    code: str | None = None  # a referral deep link
    command: str | None = None  # an "open the bot" pointer that runs this command


def deep_link(bot_username: str, payload: str) -> str:
    if not _PAYLOAD.match(payload):
        raise ValueError(f"not a valid start payload: {payload!r}")
    return f"https://t.me/{bot_username}?start={payload}"


def referral_payload(code: str, chat_id: int) -> str:
    return f"{code}_{chat_id}"


def open_payload(chat_id: int, command: str | None = None) -> str:
    payload = f"g{chat_id}" + (f"_{command}" if command else "")
    return payload if len(payload) <= PAYLOAD_LIMIT else f"g{chat_id}"


def parse_start(payload: str) -> StartPayload | None:
    payload = payload.strip()
    if not _PAYLOAD.match(payload):
        return None
    opened = _OPEN.match(payload)
    if opened:
        return StartPayload(int(opened.group(1)), command=opened.group(2))
    referral = _REFERRAL.match(payload)
    if referral:
        return StartPayload(int(referral.group(2)), code=referral.group(1))
    return None


def link_name(code: str) -> str:
    """The invite link's name is the member's code: the join update hands it back."""
    return code[:NAME_LIMIT]
