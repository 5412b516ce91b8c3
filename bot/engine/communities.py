"""Communities and their programs: found or created on first contact, settings resolved."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bot.engine.context import EngineContext
from bot.engine.events import CommunityRef
from bot.engine.models import Community
from bot.engine.ports import Repository
from bot.engine.program_settings import ProgramSettings


async def resolve(
    repo: Repository, ctx: EngineContext, refs: Iterable[CommunityRef], now: int
) -> dict[tuple[str, str], Community]:
    """The community for each reference; a new one gets its own program with the defaults."""
    found: dict[tuple[str, str], Community] = {}
    for ref in refs:
        key = (ref.platform, ref.external_id)
        if key in found:
            continue
        cached = ctx.communities.get(key)
        if cached is not None:
            found[key] = cached
            continue
        community = await repo.community(ref.platform, ref.external_id)
        if community is None:
            name = ref.name or ref.external_id
            program_id = await repo.create_program(name, {}, now)
            community = await repo.create_community(
                ref.platform, ref.external_id, name, program_id, now, ref.kind
            )
            await repo.add_audit(
                program_id,
                community.id,
                "system",
                "program.created",
                {"community": name, "platform": ref.platform},
                now,
            )
        found[key] = community
        repo.after_commit(_cache(ctx, key, community))
    return found


def _cache(ctx: EngineContext, key: tuple[str, str], community: Community) -> Any:
    def hook() -> None:
        ctx.communities[key] = community

    return hook


async def existing(repo: Repository, ctx: EngineContext, ref: CommunityRef) -> Community | None:
    key = (ref.platform, ref.external_id)
    cached = ctx.communities.get(key)
    return cached if cached is not None else await repo.community(ref.platform, ref.external_id)


async def settings_for(
    repo: Repository, ctx: EngineContext, program_ids: Iterable[int]
) -> dict[int, ProgramSettings]:
    overrides = await repo.program_settings(program_ids)
    return {pid: ctx.defaults.with_defaults(data) for pid, data in overrides.items()}


async def settings_of(repo: Repository, ctx: EngineContext, program_id: int) -> ProgramSettings:
    return (await settings_for(repo, ctx, [program_id]))[program_id]


def changed_fields(before: ProgramSettings, after: ProgramSettings) -> dict[str, Any]:
    old, new = before.to_dict(), after.to_dict()
    return {k: v for k, v in new.items() if old[k] != v}


def dm_newcomers(ctx: EngineContext, community: Community, settings: ProgramSettings) -> bool:
    caps = ctx.caps(community.platform)
    if settings.dm_newcomers == "on":
        return caps.dms
    if settings.dm_newcomers == "off":
        return False
    return caps.dms and not caps.dms_intrusive


def locale_of(settings: ProgramSettings, preferred: str | None) -> str:
    return preferred or settings.language
