"""Member commands: invite, status, redeem, rules, leaderboard, code, help."""

from __future__ import annotations

from bot.engine.codes import display
from bot.engine.models import CHANNEL, Tier
from bot.engine.program_settings import ProgramSettings
from bot.engine.rewards import reward_text
from bot.engine.service import StatusInfo
from bot.engine.text import Date, Text, t
from commands.registry import REGISTRY, CommandContext, Option, Reply, allowed


def tier_lines(tiers: list[Tier]) -> list[Text]:
    if not tiers:
        return [t("rules.no_tiers")]
    return [
        t(
            "rules.tier_line",
            name=x.name,
            count=x.threshold,
            reward=reward_text(x.reward_kind, x.reward_value),
        )
        for x in tiers
    ]


def conversion_rule(s: ProgramSettings) -> Text:
    role = t("rules.role_clause", role=s.required_role) if s.required_role else ""
    return t(
        "rules.conversion",
        days=t("days", count=s.min_days),
        messages=t("messages", count=s.min_messages),
        role=role,
        window=t("days", count=s.conversion_window_days),
    )


@REGISTRY.command("help")
async def help_(ctx: CommandContext) -> Reply:
    lines = [
        t("help.line", usage=ctx.usage(c), description=t(c.description_key))
        for c in REGISTRY.all()
        if allowed(c, ctx)
    ]
    return Reply(t("help.body", lines=lines), private=True)


@REGISTRY.command("invite", options=[Option("new", "choice", required=False, choices=("new",))])
async def invite(ctx: CommandContext) -> Reply:
    async def console_link(_community: object, code: str) -> str:
        return f"{ctx.community.platform}://join/{code}"

    info = await ctx.engine.invite(
        ctx.community,
        ctx.user,
        ctx.make_link or console_link,
        regenerate=ctx.options.get("new") == "new",
    )
    return Reply(
        t(
            "invite.body",
            code=display(info.code),
            link=info.link,
            rule=conversion_rule(info.settings),
            tiers=tier_lines(info.tiers),
        ),
        private=True,
    )


@REGISTRY.command("status")
async def status(ctx: CommandContext) -> Reply:
    info = await ctx.engine.status(ctx.community, ctx.user)
    c = info.counts
    parts: list[Text] = [
        t(
            "status.counts",
            pending=c.get("pending", 0) + c.get("held", 0),
            converted=c.get("converted", 0),
            left=c.get("left", 0),
            expired=c.get("expired", 0),
        )
    ]
    if c.get("held", 0):
        parts.append(t("status.held_referrals", count=c["held"]))
    if info.current is None and info.next is None:
        parts.append(t("status.program_no_tiers"))  # one true sentence, not "none" and "all"
    else:
        parts.append(
            t("status.tier", tier=info.current.name) if info.current else t("status.no_tier")
        )
        parts.append(_next_tier(info))
    if info.available:
        parts.append(t("status.available", rewards=", ".join(g.label for g in info.available)))
    for g in info.later:
        parts.append(t("status.later", reward=g.label, date=Date(g.available_at)))
    if info.held:
        parts.append(t("status.on_hold", rewards=", ".join(g.label for g in info.held)))
    if info.points or info.points_unredeemed:
        parts.append(t("status.points", count=info.points))
    if info.points_unredeemed:
        parts.append(t("status.points_unredeemed", count=info.points_unredeemed))
    if info.banned:
        # Never "use /invite" to someone /invite refuses.
        parts.append(t("status.banned_no_code"))
    else:
        parts.append(t("status.code", code=info.code) if info.code else t("status.no_code"))
    return Reply(t("status.body", lines=parts), private=True)


def _next_tier(info: StatusInfo) -> Text:
    if info.next is None:
        return t("status.top_tier")
    return t(
        "status.next",
        tier=info.next.name,
        count=info.next.threshold - info.counts.get("converted", 0),
        reward=reward_text(info.next.reward_kind, info.next.reward_value),
    )


@REGISTRY.command("redeem", options=[Option("reward", "rest", required=False, max_length=60)])
async def redeem(ctx: CommandContext) -> Reply:
    done = await ctx.engine.redeem(ctx.community, ctx.user, ctx.options.get("reward"))
    return Reply(t("redeem.body", lines=[r.text for r in done]), private=True)


@REGISTRY.command("rules")
async def rules(ctx: CommandContext) -> Reply:
    s, tiers = await ctx.engine.rules(ctx.community)
    body = s.rules_text or t("rules.default_summary")
    rule = conversion_rule(s)
    community = await ctx.engine.community(ctx.community)
    if community.kind == CHANNEL:  # subscribers can't post: time stayed alone converts
        rule = t(
            "program.channel_rule",
            community=community.name,
            platform=community.platform,
            days=t("days", count=s.min_days),
            window=t("days", count=s.conversion_window_days),
        )
    return Reply(t("rules.body", rules=body, rule=rule, tiers=tier_lines(tiers)))


@REGISTRY.command(
    "leaderboard",
    options=[Option("period", "choice", required=False, choices=("all", "month", "week"))],
)
async def leaderboard(ctx: CommandContext) -> Reply:
    period = ctx.options.get("period", "all")
    board = await ctx.engine.standings(ctx.community, ctx.user, period)
    # Ties share a rank (1, 1, 3), as "your rank" counts it: 1 + how many have more.
    lines = [
        t(
            "leaderboard.line",
            rank=1 + sum(other.count > r.count for other in board.top),
            member=r.display_name,
            count=r.count,
        )
        for r in board.top
    ]
    if not lines:
        lines = [t("leaderboard.empty")]
    mine = (
        t("leaderboard.mine", rank=board.mine[0], count=board.mine[1])
        if board.mine
        else t("leaderboard.mine_none")
    )
    return Reply(
        t("leaderboard.body", period=t(f"leaderboard.period.{period}"), lines=lines, mine=mine)
    )


# "raw": the engine judges what was typed, so a malformed entry (too long, control
# characters) counts toward the guessing lock like any wrong code.
@REGISTRY.command("code", options=[Option("code", "raw")])
async def code(ctx: CommandContext) -> Reply:
    result = await ctx.engine.claim_code(ctx.community, ctx.user, ctx.options["code"])
    if result.error is not None:
        return Reply(result.error, private=True)
    return Reply(t("code.accepted", referrer=result.referrer or ""), private=True)
