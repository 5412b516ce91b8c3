"""Moderator commands: the fraud review queue, run from chat (buttons run these same commands)."""

from __future__ import annotations

from bot.engine.fraud.review import ReviewResult
from bot.engine.models import Audience, FlagStatus, Participant, Referral
from bot.engine.text import Date, Text, from_json, t
from commands.registry import REGISTRY, CommandContext, Option, Reply

MOD = Audience.MODERATOR
PER_PAGE = 10


def _approved(done: ReviewResult) -> Text:
    return t(
        "fraud.review_done",
        flags=t("fraud.approved", count=done.flags),
        referrals=t("fraud.released", count=done.referrals),
    )


def _rejected(done: ReviewResult) -> Text:
    return t(
        "fraud.review_done",
        flags=t("fraud.rejected", count=done.flags),
        referrals=t("fraud.taken", count=done.referrals),
    )


def joined_on(r: Referral, newcomer: Participant) -> Date:
    """When the newcomer joined: not when the referral was made (a code typed days later)."""
    return Date(newcomer.first_joined_at or r.created_at)


def _flag_id() -> Option:
    return Option("flag", "int", min_value=1, max_value=2**62)


@REGISTRY.command(
    "fraud-queue",
    MOD,
    [
        Option("order", "choice", required=False, choices=("newest", "riskiest")),
        Option("page", "int", required=False, min_value=1, max_value=10_000),
    ],
)
async def fraud_queue(ctx: CommandContext) -> Reply:
    order = ctx.options.get("order", "newest")
    page = ctx.options.get("page", 1)
    flags, total = await ctx.engine.fraud_queue(ctx.community, order == "riskiest", page, PER_PAGE)
    if total == 0:
        return Reply(t("fraud.queue_empty"), private=True)
    lines = [
        t(
            "fraud.queue_line",
            id=f.id,
            detector=f.detector,
            score=f.score,
            reason=from_json(f.reason),
            referral=t("fraud.queue_referral", referral=f.referral_id) if f.referral_id else "",
        )
        for f in flags
    ]
    pages = (total + PER_PAGE - 1) // PER_PAGE
    return Reply(
        t(
            "fraud.queue_body",
            total=total,
            order=t(f"fraud.order_{order}"),
            page=page,
            pages=pages,
            lines=lines,
        ),
        private=True,
    )


@REGISTRY.command("fraud-show", MOD, [_flag_id()])
async def fraud_show(ctx: CommandContext) -> Reply:
    d = await ctx.engine.fraud_show(ctx.community, ctx.options["flag"])
    f, people = d.flag, d.people
    referrer = people[d.referrer_id]
    if d.referral is not None:
        r = d.referral
        referral: Text = t(
            "fraud.show_referral",
            referral=r.id,
            member=people[r.referred_id].display_name,
            referrer=referrer.display_name,
            status=r.status.value,
            risk=r.risk,
            date=joined_on(r, people[r.referred_id]),
            source=r.source,
        )
    else:
        referral = t("fraud.show_no_referral", member=people[f.participant_id].display_name)
    c = d.referrer_counts
    lines = [
        t(
            "fraud.show_flag_line",
            id=x.id,
            detector=x.detector,
            score=x.score,
            status=x.status.value,
            reason=from_json(x.reason),
        )
        for x in d.flags
    ]
    buttons: tuple[tuple[Text, str], ...] = ()
    if f.status == FlagStatus.OPEN:
        buttons = (
            (t("fraud.button.approve"), f"fraud-approve {f.id}"),
            (t("fraud.button.reject"), f"fraud-reject {f.id}"),
            (t("fraud.button.ban", member=referrer.display_name), f"fraud-ban {referrer.user_id}"),
        )
    return Reply(
        t(
            "fraud.show_body",
            id=f.id,
            detector=f.detector,
            score=f.score,
            status=f.status.value,
            reason=from_json(f.reason),
            referral=referral,
            referrer=referrer.display_name,
            pending=c.get("pending", 0) + c.get("held", 0),
            converted=c.get("converted", 0),
            left=c.get("left", 0),
            expired=c.get("expired", 0),
            rejected=c.get("rejected", 0),
            banned=t("fraud.show_banned") if referrer.banned_at else "",
            flags=lines,
        ),
        private=True,
        buttons=buttons,
    )


@REGISTRY.command(
    "fraud-approve", MOD, [_flag_id(), Option("note", "rest", required=False, max_length=300)]
)
async def fraud_approve(ctx: CommandContext) -> Reply:
    done = await ctx.engine.fraud_review(
        ctx.community, ctx.actor, [ctx.options["flag"]], None, True, ctx.options.get("note")
    )
    return Reply(_approved(done), private=True)


@REGISTRY.command(
    "fraud-reject", MOD, [_flag_id(), Option("reason", "rest", required=False, max_length=300)]
)
async def fraud_reject(ctx: CommandContext) -> Reply:
    done = await ctx.engine.fraud_review(
        ctx.community, ctx.actor, [ctx.options["flag"]], None, False, ctx.options.get("reason")
    )
    return Reply(_rejected(done), private=True)


@REGISTRY.command("fraud-approve-all", MOD, [Option("member", "member", max_length=100)])
async def fraud_approve_all(ctx: CommandContext) -> Reply:
    done = await ctx.engine.fraud_review(
        ctx.community, ctx.actor, None, ctx.options["member"], True, None
    )
    return Reply(_approved(done), private=True)


@REGISTRY.command(
    "fraud-reject-all",
    MOD,
    [
        Option("member", "member", max_length=100),
        Option("reason", "rest", required=False, max_length=300),
    ],
)
async def fraud_reject_all(ctx: CommandContext) -> Reply:
    done = await ctx.engine.fraud_review(
        ctx.community, ctx.actor, None, ctx.options["member"], False, ctx.options.get("reason")
    )
    return Reply(_rejected(done), private=True)


@REGISTRY.command(
    "fraud-ban",
    MOD,
    [
        Option("member", "member", max_length=100),
        Option("reason", "rest", required=False, max_length=300),
    ],
)
async def fraud_ban(ctx: CommandContext) -> Reply:
    reason = ctx.options.get("reason") or "banned by a moderator"
    person, taken = await ctx.engine.fraud_ban(
        ctx.community, ctx.actor, ctx.options["member"], reason
    )
    return Reply(t("fraud.banned_done", member=person.display_name, count=taken), private=True)


@REGISTRY.command("fraud-unban", MOD, [Option("member", "member", max_length=100)])
async def fraud_unban(ctx: CommandContext) -> Reply:
    person, _ = await ctx.engine.fraud_ban(
        ctx.community, ctx.actor, ctx.options["member"], "", ban=False
    )
    return Reply(t("fraud.unbanned", member=person.display_name), private=True)


@REGISTRY.command(
    "fraud-link",
    Audience.ADMIN,
    [Option("member", "member", max_length=100), Option("other", "member", max_length=100)],
)
async def fraud_link(ctx: CommandContext) -> Reply:
    a, b = await ctx.engine.fraud_link(
        ctx.community, ctx.actor, ctx.options["member"], ctx.options["other"]
    )
    return Reply(t("fraud.linked", a=a.display_name, b=b.display_name), private=True)


@REGISTRY.command(
    "referrals",
    MOD,
    [
        Option("member", "member", max_length=100),
        Option("count", "int", required=False, min_value=1, max_value=50),
    ],
)
async def referrals(ctx: CommandContext) -> Reply:
    person, rows = await ctx.engine.referrals_of(
        ctx.community, ctx.options["member"], ctx.options.get("count", 10)
    )
    lines = [
        t(
            "referrals.line",
            id=r.id,
            member=who.display_name,
            status=r.status.value,
            date=joined_on(r, who),
            source=r.source,
            risk=r.risk,
        )
        for r, who in rows
    ] or [t("referrals.none")]
    return Reply(t("referrals.body", member=person.display_name, lines=lines), private=True)


# -- who invited a member (issue 9) ---------------------------------------------------------


@REGISTRY.command("who-invited", MOD, [Option("member", "member", max_length=100)])
async def who_invited(ctx: CommandContext) -> Reply:
    story = await ctx.engine.who_invited(ctx.community, ctx.options["member"])
    p, r = story.person, story.referral
    lines: list[Text] = [
        t(
            "whoinvited.joined",
            member=p.display_name,
            how=t(f"whoinvited.source.{story.source or 'none'}"),
            date=Date(story.joined_at) if story.joined_at else "-",
        )
    ]
    if r is not None and story.referrer is not None:
        lines.append(
            t(
                "whoinvited.referral",
                referrer=story.referrer.display_name,
                id=r.id,
                status=r.status.value,
                date=Date(r.created_at),
                how=r.source,
            )
        )
    else:
        lines.append(t("whoinvited.nobody"))
    if story.candidates and r is None:
        lines.append(
            t(
                "whoinvited.candidates",
                candidates=", ".join(f"{c.code} ({c.owner})" for c in story.candidates),
            )
        )
    if story.left_at:
        lines.append(t("whoinvited.left", date=Date(story.left_at)))
    return Reply(t("whoinvited.body", lines=lines), private=True)


@REGISTRY.command(
    "settle-join",
    MOD,
    [Option("member", "member", max_length=100), Option("code", max_length=40)],
)
async def settle_join(ctx: CommandContext) -> Reply:
    person, referrer = await ctx.engine.settle_join(
        ctx.community, ctx.actor, ctx.options["member"], ctx.options["code"]
    )
    return Reply(
        t("whoinvited.settled", member=person.display_name, referrer=referrer.display_name),
        private=True,
    )
