"""Admin commands: configure the program in chat. Each change is validated and audited."""

from __future__ import annotations

from bot.engine.dead_letters import ROLE_KINDS
from bot.engine.models import CHANNEL, Audience, Community, DeadLetter
from bot.engine.program_settings import SETTING_KEYS, ProgramSettings, describe_digest
from bot.engine.rewards import reward_text
from bot.engine.text import Date, Text, t
from commands.member import conversion_rule, tier_lines
from commands.registry import REGISTRY, CommandContext, Option, Reply

ADMIN = Audience.ADMIN
REWARD_KINDS = ("role", "coupon", "points", "message", "channel_access", "tag")
TIER_OPTIONS = [
    Option("name", max_length=60),
    Option("threshold", "int", min_value=1, max_value=100_000),
    Option("kind", "choice", choices=REWARD_KINDS),
    Option("value", "rest", required=False, max_length=1000),
]


@REGISTRY.command("program", ADMIN)
async def program(ctx: CommandContext) -> Reply:
    o = await ctx.engine.overview(ctx.community)
    s = o.settings
    names = {c.id: c.name for c in o.communities}

    def where(community_id: int | None, channel: str | None) -> str:
        if community_id is None or channel is None:
            return "-"
        return f"#{channel} ({names.get(community_id, '?')})"

    referee = (
        reward_text(s.referee_reward_kind, s.referee_reward_value)
        if s.referee_reward_kind
        else t("program.off")
    )
    stock = [
        t("program.stock_line", pool=pool, free=free, total=total)
        for pool, (free, total) in o.stock.items()
    ] or [t("program.no_stock")]
    return Reply(
        t(
            "program.body",
            name=o.name,
            id=o.program_id,
            communities=", ".join(f"{c.name} ({c.platform})" for c in o.communities),
            rule=[conversion_rule(s), *channel_rules(o.communities, s)],
            code_window=t("days", count=s.code_window_days),
            holding=t("days", count=s.holding_days),
            announce=where(s.announce_community_id, s.announce_channel),
            admin_channel=where(s.admin_community_id, s.admin_channel),
            digest=describe_digest(s),
            dm=s.dm_newcomers,
            language=s.language,
            referee=referee,
            tiers=tier_lines(o.tiers),
            stock=stock,
            fraud=t(
                "program.fraud",
                mode=s.risk_mode,
                off=", ".join(s.detectors_off) or t("program.none"),
                count=s.velocity_count,
                minutes=s.velocity_minutes,
                young=t("days", count=s.young_account_days),
                leave=s.leave_early_count,
                leave_share=s.leave_early_share,
                empty=s.empty_count,
                empty_share=s.empty_share,
                deadline=(
                    t(
                        "program.deadline",
                        days=t("days", count=s.review_deadline_days),
                        action=s.review_deadline_action,
                    )
                    if s.review_deadline_days
                    else t("program.off")
                ),
                moderators=where(s.moderator_community_id, s.moderator_channel),
            ),
            settings=", ".join(SETTING_KEYS),
        ),
        private=True,
    )


@REGISTRY.command("set", ADMIN, [Option("setting", max_length=40), Option("value", "raw")])
async def set_(ctx: CommandContext) -> Reply:
    key, value = ctx.options["setting"], ctx.options["value"]
    await ctx.engine.set_setting(ctx.community, ctx.actor, key, value)
    return Reply(t("admin.setting_saved", setting=key.lower()), private=True)


async def role_warnings(ctx: CommandContext, kind: str, role: str | None) -> list[Reply]:
    """A role reward the platform cannot give (missing, above the bot...): said at once."""
    if kind != "role" or not role or ctx.diagnose is None:
        return []
    wanted = role.strip().lower()
    problems = [p for p in await ctx.diagnose() if str(p.values.get("role", "")).lower() == wanted]
    return [Reply(t("check.problems", lines=problems), private=True)] if problems else []


@REGISTRY.command("tier-add", ADMIN, TIER_OPTIONS)
async def tier_add(ctx: CommandContext) -> list[Reply]:
    o = ctx.options
    tier = await ctx.engine.tier_add(
        ctx.community, ctx.actor, o["name"], str(o["threshold"]), o["kind"], o.get("value", "")
    )
    added = Reply(
        t(
            "admin.tier_added",
            name=tier.name,
            count=tier.threshold,
            reward=reward_text(tier.reward_kind, tier.reward_value),
        ),
        private=True,
    )
    return [added, *await role_warnings(ctx, tier.reward_kind, tier.reward_value)]


@REGISTRY.command("tier-edit", ADMIN, TIER_OPTIONS)
async def tier_edit(ctx: CommandContext) -> list[Reply]:
    o = ctx.options
    tier = await ctx.engine.tier_edit(
        ctx.community, ctx.actor, o["name"], str(o["threshold"]), o["kind"], o.get("value", "")
    )
    edited = Reply(
        t(
            "admin.tier_edited",
            name=tier.name,
            count=tier.threshold,
            reward=reward_text(tier.reward_kind, tier.reward_value),
        ),
        private=True,
    )
    return [edited, *await role_warnings(ctx, tier.reward_kind, tier.reward_value)]


@REGISTRY.command("tier-remove", ADMIN, [Option("name", "rest", max_length=60)])
async def tier_remove(ctx: CommandContext) -> Reply:
    tier = await ctx.engine.tier_remove(ctx.community, ctx.actor, ctx.options["name"])
    return Reply(t("admin.tier_removed", name=tier.name), private=True)


@REGISTRY.command(
    "referee-reward",
    ADMIN,
    [
        Option("kind", "choice", choices=(*REWARD_KINDS, "off")),
        Option("value", "rest", required=False, max_length=1000),
    ],
)
async def referee_reward(ctx: CommandContext) -> Reply:
    s = await ctx.engine.referee_reward(
        ctx.community, ctx.actor, ctx.options["kind"], ctx.options.get("value", "")
    )
    if not s.referee_reward_kind:
        return Reply(t("admin.referee_off"), private=True)
    return Reply(
        t("admin.referee_set", reward=reward_text(s.referee_reward_kind, s.referee_reward_value)),
        private=True,
    )


@REGISTRY.command(
    "coupons-add",
    ADMIN,
    [Option("pool", max_length=60), Option("codes", "rest", max_length=100_000)],
)
async def coupons_add(ctx: CommandContext) -> Reply:
    added, duplicates, free = await ctx.engine.add_coupons(
        ctx.community, ctx.actor, ctx.options["pool"], ctx.options["codes"]
    )
    return Reply(
        t(
            "admin.coupons_added",
            count=added,
            duplicates=t("admin.duplicates_skipped", count=duplicates),
            pool=ctx.options["pool"],
            free=free,
        ),
        private=True,
    )


@REGISTRY.command("coupons", ADMIN)
async def coupons(ctx: CommandContext) -> Reply:
    o = await ctx.engine.overview(ctx.community)
    lines = [
        t("program.stock_line", pool=pool, free=free, total=total)
        for pool, (free, total) in o.stock.items()
    ] or [t("program.no_stock")]
    return Reply(t("admin.coupons_body", lines=lines), private=True)


@REGISTRY.command("link-program", ADMIN, [Option("token", required=False, max_length=40)])
async def link_program(ctx: CommandContext) -> Reply:
    token = ctx.options.get("token")
    if token is None:
        issued = await ctx.engine.link_token(ctx.community, ctx.actor)
        minutes = ctx.engine.ctx.link_token_seconds // 60
        return Reply(
            t("admin.link_token", token=issued, minutes=t("minutes", count=minutes)), private=True
        )
    program_id = await ctx.engine.link_program(ctx.community, ctx.actor, token)
    return Reply(t("admin.linked", program=program_id), private=True)


@REGISTRY.command("check", ADMIN)
async def check(ctx: CommandContext) -> Reply:
    problems = await ctx.diagnose() if ctx.diagnose is not None else []
    problems = [*problems, *_stuck_lines(await ctx.engine.dead_letters(ctx.community))]
    if not problems:
        return Reply(t("check.ok", platform=ctx.community.platform), private=True)
    return Reply(t("check.problems", lines=problems), private=True)


@REGISTRY.command(
    "audit", ADMIN, [Option("count", "int", required=False, min_value=1, max_value=50)]
)
async def audit(ctx: CommandContext) -> Reply:
    entries = await ctx.engine.audit(ctx.community, ctx.options.get("count", 10))
    lines: list[Text] = [
        t(
            "admin.audit_line",
            id=e.id,
            date=Date(e.created_at),
            actor=e.actor,
            action=e.action,
            details=e.details,
        )
        for e in entries
    ] or [t("admin.audit_empty")]
    return Reply(t("admin.audit_body", lines=lines), private=True)


@REGISTRY.command(
    "referral-revoke",
    ADMIN,
    [
        Option("referral", "int", min_value=1, max_value=2**62),
        Option("reason", "rest", required=False, max_length=300),
    ],
)
async def referral_revoke(ctx: CommandContext) -> Reply:
    reason = ctx.options.get("reason") or "revoked by an admin"
    revoked = await ctx.engine.revoke_referral(
        ctx.community, ctx.actor, ctx.options["referral"], reason
    )
    return Reply(
        t("admin.referral_revoked", id=ctx.options["referral"], count=revoked), private=True
    )


# -- outbox: dead letters (issue 11) ----------------------------------------------------------

_KINDS = ("message", "dm", "grant_role", "revoke_role", "channel_access")


def channel_rules(communities: list[Community], s: ProgramSettings) -> list[Text]:
    """A broadcast channel's referrals convert on time stayed alone (nobody posts there)."""
    return [
        t(
            "program.channel_rule",
            community=c.name,
            platform=c.platform,
            days=t("days", count=s.min_days),
            window=t("days", count=s.conversion_window_days),
        )
        for c in communities
        if c.kind == CHANNEL
    ]


def _stuck_lines(dead: list[DeadLetter]) -> list[Text]:
    """/check's lines about dead letters: role changes never applied are named apart."""
    roles = sum(d.count for d in dead if d.kind in ROLE_KINDS)
    others = sum(d.count for d in dead if d.kind not in ROLE_KINDS)
    lines = [t("outbox.check_roles", count=roles)] if roles else []
    return lines + ([t("outbox.check_stuck", count=others)] if others else [])


@REGISTRY.command("outbox", ADMIN, [Option("action", "choice", required=False, choices=("retry",))])
async def outbox(ctx: CommandContext) -> Reply:
    if ctx.options.get("action") == "retry":
        count = await ctx.engine.retry_dead_letters(ctx.community, ctx.actor)
        if not count:
            return Reply(t("outbox.nothing_to_retry"), private=True)
        return Reply(t("outbox.retried", count=count), private=True)
    dead = await ctx.engine.dead_letters(ctx.community)
    if not dead:
        return Reply(t("outbox.empty"), private=True)
    lines = [
        t(
            "outbox.line",
            count=d.count,
            kind=t(f"outbox.kind_{d.kind if d.kind in _KINDS else 'other'}"),
            why=t(f"outbox.why_{d.reason}"),
            error=d.error[:200],
        )
        for d in dead[:20]
    ]
    return Reply(t("outbox.body", total=sum(d.count for d in dead), lines=lines), private=True)
