"""Dead letters: outbox items given up on, as admins see and retry them (``/outbox``).

An item is given up on when the platform refused it for good ("refused"), when every
attempt failed ("attempts"), or when the member can't be messaged ("unreachable": never started
the bot, or blocked it; counted, not warned about per item). Nothing is deleted: the worker
tries the "attempts" kind again once the platform delivers again, and an admin can send every
kind back into the queue.
"""

from __future__ import annotations

from bot.engine.admin import Actor
from bot.engine.context import EngineContext
from bot.engine.models import Community, DeadLetter
from bot.engine.ports import Repository

ROLE_KINDS = ("grant_role", "revoke_role")


async def _by_platform(repo: Repository, community: Community) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in await repo.program_communities(community.program_id):
        out.setdefault(c.platform, []).append(c.external_id)
    return out


async def of_program(repo: Repository, community: Community) -> list[DeadLetter]:
    """The program's dead letters, in all its communities, grouped by kind and error."""
    out: list[DeadLetter] = []
    for platform, ids in sorted((await _by_platform(repo, community)).items()):
        out += await repo.dead_letters(platform, ids)
    return out


async def retry(repo: Repository, ctx: EngineContext, community: Community, actor: Actor) -> int:
    """Every dead letter of the program back in the queue, due now, with all its attempts."""
    now = ctx.clock.now()
    count = 0
    for platform, ids in sorted((await _by_platform(repo, community)).items()):
        count += await repo.revive_outbox(
            [platform], now, 0, reasons=("attempts", "refused", "unreachable"), communities=ids
        )
    if count:
        await repo.add_audit(
            community.program_id,
            community.id,
            str(actor),
            "outbox.retry",
            {"items": count},
            now,
        )
    return count
