"""Outbox rows: every message and role change the engine wants, queued in its transaction.

A row is delivered by the outbox worker after the commit; its dedupe key is UNIQUE, so the same
effect is never queued twice and redelivery after a crash is harmless.
"""

from __future__ import annotations

import json
from typing import Any

from bot.engine.models import Community
from bot.engine.text import Text, to_json


def _row(platform: str, kind: str, payload: dict[str, Any], key: str, now: int) -> dict[str, Any]:
    return {
        "platform": platform,
        "kind": kind,
        "payload": json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
        "dedupe_key": key,
        "next_attempt_at": now,
        "created_at": now,
        "attempts": 0,
    }


def to_channel(
    community: Community,
    channel: str | None,
    text: Text,
    locale: str,
    key: str,
    now: int,
    buttons: tuple[tuple[Text, str], ...] = (),
) -> dict[str, Any]:
    """A message in a community channel (None: the community's default channel).

    ``buttons``: (label, command line) pairs; pressing one runs the command as the presser,
    with the presser's own permissions (the console shows them as commands to type).
    """
    payload = {
        "community": community.external_id,
        "channel": channel,
        "locale": locale,
        "text": to_json(text),
        "buttons": [{"label": to_json(label), "command": command} for label, command in buttons],
    }
    return _row(community.platform, "message", payload, key, now)


def to_user(
    community: Community, user_id: str, text: Text, locale: str, key: str, now: int
) -> dict[str, Any]:
    """A private message to one member, sent in the context of a community."""
    payload = {
        "community": community.external_id,
        "user": user_id,
        "locale": locale,
        "text": to_json(text),
    }
    return _row(community.platform, "dm", payload, key, now)


def channel_access(
    community: Community, user_id: str, channel: str, locale: str, key: str, now: int
) -> dict[str, Any]:
    """Give a member a single-use way into a private channel or group (the platform makes it)."""
    payload = {
        "community": community.external_id,
        "user": user_id,
        "channel": channel,
        "locale": locale,
    }
    return _row(community.platform, "channel_access", payload, key, now)


def role_change(
    community: Community, user_id: str, role: str, grant: bool, key: str, now: int
) -> dict[str, Any]:
    payload = {"community": community.external_id, "user": user_id, "role": role}
    return _row(community.platform, "grant_role" if grant else "revoke_role", payload, key, now)


def link_revocation(community: Community, url: str, key: str, now: int) -> dict[str, Any]:
    """Retire a personal link on the platform (its code no longer credits anyway).

    Delivered through ``revoke_referral_link`` where a platform has one; elsewhere it is done.
    """
    payload = {"community": community.external_id, "url": url}
    return _row(community.platform, "revoke_link", payload, key, now)
