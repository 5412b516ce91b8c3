"""Fewer duplicates at Discord: every send of one outbox item carries the same nonce with
enforce_nonce, so a retry after a lost response is dropped by Discord, not posted twice."""

from __future__ import annotations

from bot.engine.models import OutboxItem
from tests.platforms.discord.conftest import World


def _creates(world: World) -> list[dict]:
    return [
        r.json
        for r in world.env.http_requests
        if r.method == "POST" and r.path.endswith("/messages") and isinstance(r.json, dict)
    ]


async def test_a_resent_message_carries_the_same_enforced_nonce(world: World) -> None:
    await world.member("alice")
    await world.deliver()
    welcomes = [p for p in _creates(world) if str(p.get("content", "")).startswith("Welcome")]
    assert welcomes and all(p.get("enforce_nonce") is True for p in welcomes)
    # The response was lost: the worker retries the same item (a process that crashed
    # before marking it delivered does the same).
    item = OutboxItem(
        99,
        "discord",
        "message",
        {
            "community": str(world.guild.id),
            "channel": "general",
            "locale": "en",
            "text": {"$t": "welcome.plain", "v": {"member": "alice", "community": "Lounge"}},
            "buttons": [],
        },
        "welcome:test:1",
        0,
    )
    await world.platform.deliver(item)
    world.platform.deliverer.delivered.discard(item.dedupe_key)
    await world.platform.deliver(item)
    await world.env.settle()
    sent = [
        p for p in _creates(world) if p.get("nonce") and p.get("content", "").startswith("Welcome")
    ]
    nonces = [p["nonce"] for p in sent[-2:]]
    assert len(nonces) == 2 and nonces[0] == nonces[1]
    assert len(nonces[0]) <= 25
    assert len({p["nonce"] for p in sent}) == len(sent) - 1  # other messages: other nonces
