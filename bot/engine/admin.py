"""Admins configure their program from chat. Every change is validated, then audited."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

from bot.engine import codes as codes_mod
from bot.engine import communities
from bot.engine.context import EngineContext
from bot.engine.errors import UserError
from bot.engine.models import TAG_MAX_LENGTH, AuditEntry, Community, RewardKind, Tier
from bot.engine.ports import Repository
from bot.engine.program_settings import ProgramSettings, apply_setting
from bot.engine.rewards import tell_granted, tell_refilled, tier_grant_rows
from bot.engine.text_rules import check_text

_NAME = re.compile(r"^[\w][\w \-]{0,59}$")
_POOL = re.compile(r"^[\w\-]{1,60}$")
MAX_COUPONS_PER_UPLOAD = 1000


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it, as the audit log records it."""

    user_id: str
    name: str

    def __str__(self) -> str:
        # Stored in 200-character columns (audit actor, reviewer): a long name is cut.
        return f"{self.name[:100]} ({self.user_id[:90]})"


async def _audit(
    repo: Repository,
    ctx: EngineContext,
    community: Community,
    actor: Actor,
    action: str,
    details: dict,
) -> None:
    await repo.add_audit(
        community.program_id, community.id, str(actor), action, details, ctx.clock.now()
    )


async def set_setting(
    repo: Repository, ctx: EngineContext, community: Community, actor: Actor, key: str, value: str
) -> ProgramSettings:
    before = await communities.settings_of(repo, ctx, community.program_id)
    after = apply_setting(before, key, value, community.id)
    if after.required_role and not ctx.caps(community.platform).roles:
        raise UserError("setting.roles_unsupported", field=key, platform=community.platform)
    changed = communities.changed_fields(before, after)
    overrides = await repo.program_settings([community.program_id])
    merged = dict(overrides.get(community.program_id, {})) | changed
    await repo.save_program_settings(community.program_id, merged)
    await _audit(
        repo,
        ctx,
        community,
        actor,
        "setting.changed",
        {"key": key.strip().lower(), "value": value.strip()[:200]},
    )
    return after


def tier_name(raw: str) -> str:
    name = check_text("name", raw, 60)
    if not _NAME.match(name):
        raise UserError("tier.bad_name")
    return name


def reward_value(
    ctx: EngineContext, program_platforms: set[str], kind_raw: str, value: str
) -> tuple[RewardKind, str]:
    allowed = [k.value for k in RewardKind]
    try:
        kind = RewardKind(kind_raw.strip().lower())
    except ValueError:
        raise UserError("reward_error.bad_kind", allowed=", ".join(allowed)) from None
    for platform in sorted(program_platforms):
        caps = ctx.caps(platform)
        if kind == RewardKind.ROLE and not caps.roles:
            raise UserError("reward_error.roles_unsupported", platform=platform)
        if kind == RewardKind.TAG and not caps.tags:
            raise UserError("reward_error.tags_unsupported", platform=platform)
        if kind == RewardKind.CHANNEL_ACCESS and not caps.channel_access:
            raise UserError("reward_error.channel_unsupported", platform=platform)
    if kind == RewardKind.POINTS:
        try:
            points = int(value.strip())
        except ValueError:
            raise UserError("reward_error.bad_points") from None
        if not 1 <= points <= 1_000_000:
            raise UserError("reward_error.bad_points")
        return kind, str(points)
    if kind == RewardKind.COUPON:
        pool = value.strip()
        if not _POOL.match(pool):
            raise UserError("reward_error.bad_pool")
        return kind, pool
    if kind == RewardKind.ROLE:
        return kind, check_text("role", value, 100)
    if kind == RewardKind.CHANNEL_ACCESS:
        return kind, check_text("channel", value, 100)
    if kind == RewardKind.TAG:
        tag = check_text("tag", value, TAG_MAX_LENGTH)
        if any(unicodedata.category(ch) == "So" for ch in tag):  # Telegram refuses emoji
            raise UserError("reward_error.tag_emoji", max=TAG_MAX_LENGTH)
        return kind, tag
    return kind, check_text("message", value, 1000, multiline=True)


async def _platforms(repo: Repository, program_id: int) -> set[str]:
    return {c.platform for c in await repo.program_communities(program_id)}


def _find(tiers: list[Tier], name: str) -> Tier | None:
    return next((tier for tier in tiers if tier.name.lower() == name.lower()), None)


def _threshold(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise UserError("tier.bad_threshold") from None
    if not 1 <= value <= 100_000:
        raise UserError("tier.bad_threshold")
    return value


async def tier_add(
    repo: Repository,
    ctx: EngineContext,
    community: Community,
    actor: Actor,
    name: str,
    threshold: str,
    kind: str,
    value: str,
) -> Tier:
    clean = tier_name(name)
    needed = _threshold(threshold)
    reward_kind, reward = reward_value(
        ctx, await _platforms(repo, community.program_id), kind, value
    )
    tiers = await repo.tiers(community.program_id)
    if _find(tiers, clean):
        raise UserError("tier.exists", name=clean)
    clash = next((x for x in tiers if x.threshold == needed), None)
    if clash:
        raise UserError("tier.threshold_taken", threshold=needed, name=clash.name)
    tier_id = await repo.insert_tier(
        community.program_id, clean, needed, reward_kind.value, reward, ctx.clock.now()
    )
    await _audit(
        repo,
        ctx,
        community,
        actor,
        "tier.added",
        {"name": clean, "threshold": needed, "kind": reward_kind.value, "value": reward},
    )
    tier = Tier(tier_id, community.program_id, clean, needed, reward_kind, reward)
    await grant_to_qualified(repo, ctx, community, tier)
    return tier


async def grant_to_qualified(
    repo: Repository, ctx: EngineContext, community: Community, tier: Tier
) -> int:
    """A new or lowered tier goes at once to every member whose count already reaches it."""
    now = ctx.clock.now()
    qualified = await repo.qualified_for(community.program_id, tier.threshold)
    if not qualified:
        return 0
    s = await communities.settings_of(repo, ctx, community.program_id)
    people = {p.id: p for p in qualified}
    counts = {p.id: tier.threshold for p in qualified}
    rows = tier_grant_rows(community.program_id, people, counts, [tier], s, now)
    created = await repo.insert_grants(rows)
    home = {pid: community for pid in people}
    await tell_granted(repo, created, people, home, {community.program_id: s}, now, ctx)
    return len(created)


async def tier_edit(
    repo: Repository,
    ctx: EngineContext,
    community: Community,
    actor: Actor,
    name: str,
    threshold: str,
    kind: str,
    value: str,
) -> Tier:
    tiers = await repo.tiers(community.program_id)
    tier = _find(tiers, name.strip())
    if tier is None:
        raise UserError(
            "tier.unknown", name=name.strip()[:60], known=", ".join(x.name for x in tiers) or "-"
        )
    needed = _threshold(threshold)
    reward_kind, reward = reward_value(
        ctx, await _platforms(repo, community.program_id), kind, value
    )
    clash = next((x for x in tiers if x.threshold == needed and x.id != tier.id), None)
    if clash:
        raise UserError("tier.threshold_taken", threshold=needed, name=clash.name)
    await repo.update_tier(tier.id, needed, reward_kind.value, reward)
    await _audit(
        repo,
        ctx,
        community,
        actor,
        "tier.edited",
        {"name": tier.name, "threshold": needed, "kind": reward_kind.value, "value": reward},
    )
    edited = Tier(tier.id, tier.program_id, tier.name, needed, reward_kind, reward)
    await grant_to_qualified(repo, ctx, community, edited)
    return edited


async def tier_remove(
    repo: Repository, ctx: EngineContext, community: Community, actor: Actor, name: str
) -> Tier:
    tiers = await repo.tiers(community.program_id)
    tier = _find(tiers, name.strip())
    if tier is None:
        raise UserError(
            "tier.unknown", name=name.strip()[:60], known=", ".join(x.name for x in tiers) or "-"
        )
    await repo.remove_tier(tier.id, ctx.clock.now())
    await _audit(repo, ctx, community, actor, "tier.removed", {"name": tier.name})
    return tier


async def set_referee_reward(
    repo: Repository, ctx: EngineContext, community: Community, actor: Actor, kind: str, value: str
) -> ProgramSettings:
    before = await communities.settings_of(repo, ctx, community.program_id)
    if kind.strip().lower() == "off":
        changed = {"referee_reward_kind": None, "referee_reward_value": ""}
    else:
        reward_kind, reward = reward_value(
            ctx, await _platforms(repo, community.program_id), kind, value
        )
        changed = {"referee_reward_kind": reward_kind.value, "referee_reward_value": reward}
    overrides = (await repo.program_settings([community.program_id])).get(community.program_id, {})
    await repo.save_program_settings(community.program_id, dict(overrides) | changed)
    await _audit(repo, ctx, community, actor, "referee_reward.changed", changed)
    return before.with_defaults(changed)


def parse_coupon_codes(raw: str) -> list[str]:
    codes = [c for c in re.split(r"[\s,;]+", raw.strip()) if c]
    if not codes:
        raise UserError("coupons.none_given")
    if len(codes) > MAX_COUPONS_PER_UPLOAD:
        raise UserError("coupons.too_many", max=MAX_COUPONS_PER_UPLOAD, count=len(codes))
    for code in codes:
        check_text("coupon", code, 200)
    return list(dict.fromkeys(codes))


async def add_coupons(
    repo: Repository, ctx: EngineContext, community: Community, actor: Actor, pool: str, raw: str
) -> tuple[int, int, int]:
    """Returns (added, duplicates skipped, free in the pool now)."""
    name = pool.strip()
    if not _POOL.match(name):
        raise UserError("reward_error.bad_pool")
    codes = parse_coupon_codes(raw)
    typed = len([c for c in re.split(r"[\s,;]+", raw.strip()) if c])  # repeats count as skipped
    added = await repo.add_coupons(community.program_id, name, codes, ctx.clock.now())
    await _audit(
        repo,
        ctx,
        community,
        actor,
        "coupons.added",
        {"pool": name, "added": added, "duplicates": typed - added},
    )
    if added:
        await tell_refilled(repo, ctx, community.program_id, name, ctx.clock.now())
    free, _ = (await repo.coupon_stock(community.program_id)).get(name, (0, 0))
    return added, typed - added, free


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_link_token(
    repo: Repository, ctx: EngineContext, community: Community, actor: Actor
) -> str:
    token = codes_mod.generate() + codes_mod.generate()[:4]
    now = ctx.clock.now()
    await repo.insert_link_token(
        _hash(token), community.program_id, now, now + ctx.link_token_seconds
    )
    await _audit(repo, ctx, community, actor, "program.link_token_issued", {})
    return codes_mod.display(token[:10]) + "-" + token[10:]


async def link_with_token(
    repo: Repository, ctx: EngineContext, community: Community, actor: Actor, raw_token: str
) -> int:
    token = re.sub(r"[\s\-]", "", raw_token).upper()
    now = ctx.clock.now()
    if await repo.program_has_activity(community.program_id):
        raise UserError("link.has_activity")
    target = await repo.use_link_token(_hash(token), now)
    if target is None:
        raise UserError("link.bad_token")
    if target == community.program_id:
        raise UserError("link.same_program")
    old = community.program_id
    await repo.move_community(community.id, target)
    moved = Community(
        community.id,
        community.platform,
        community.external_id,
        community.name,
        target,
        community.kind,
    )
    await repo.add_audit(
        target,
        community.id,
        str(actor),
        "program.community_linked",
        {"community": community.name, "from_program": old},
        now,
    )
    repo.after_commit(
        lambda: ctx.communities.__setitem__((community.platform, community.external_id), moved)
    )
    return target


async def audit(repo: Repository, community: Community, limit: int) -> list[AuditEntry]:
    return await repo.audit(community.program_id, limit)
