"""A program's settings: typed, validated, each change named by the key admins type.

Every check raises a UserError naming the field and what is allowed, before anything is written.
"""

from __future__ import annotations

import re
import string
from dataclasses import asdict, dataclass, replace
from typing import Any

from bot.engine.errors import UserError
from bot.engine.text_rules import check_text

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DM_MODES = ("auto", "on", "off")
LANGUAGES = ("en",)
WELCOME_PLACEHOLDERS = ("member", "inviter", "community")
_CHANNEL = re.compile(r"^#?[\w\-]{1,100}$")
_DIGEST = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun)\s+([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True, slots=True)
class ProgramSettings:
    min_days: int = 3
    min_messages: int = 3
    required_role: str | None = None
    conversion_window_days: int = 30
    code_window_days: int = 7
    holding_days: int = 0
    welcome_text: str | None = None
    rules_text: str | None = None
    announce_community_id: int | None = None
    announce_channel: str | None = None
    admin_community_id: int | None = None
    admin_channel: str | None = None
    digest_weekday: int | None = 0  # None: digest off
    digest_minute: int = 18 * 60  # minutes after midnight UTC
    dm_newcomers: str = "auto"
    language: str = "en"
    coupon_low_stock: int = 5
    referee_reward_kind: str | None = None
    referee_reward_value: str = ""
    # Fraud review (docs/fraud.md)
    risk_mode: str = "flag"  # off | flag | hold
    detectors_off: tuple[str, ...] = ()
    young_account_days: int = 7
    velocity_count: int = 10  # more than this many referrals for one referrer...
    velocity_minutes: int = 10  # ...within this many minutes: every one is flagged
    leave_early_count: int = 3  # at least this many of a referrer's referrals left early...
    leave_early_share: int = 50  # ...and at least this percentage of all of them
    empty_count: int = 5  # at least this many referred members never posted...
    empty_share: int = 50  # ...and at least this percentage of those who joined over a day ago
    rejoin_days: int = 30
    review_deadline_days: int | None = None  # None: flags wait for a moderator
    review_deadline_action: str = "approve"  # approve | reject
    moderator_community_id: int | None = None
    moderator_channel: str | None = None
    # Welcome and join/leave log (docs/configuration.md)
    welcome_off: bool = False  # welcome-text off: no welcome message at all
    welcome_community_id: int | None = None
    welcome_channel: str | None = None  # None: the community's default channel
    log_community_id: int | None = None
    log_channel: str | None = None  # None: no join/leave log

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_defaults(self, overrides: dict[str, Any]) -> ProgramSettings:
        values = dict(overrides)
        if "detectors_off" in values:  # stored as a JSON list
            values["detectors_off"] = tuple(values["detectors_off"] or ())
        return replace(self, **values)

    def detects(self, detector: str) -> bool:
        return self.risk_mode != "off" and detector not in self.detectors_off


def _int_in(field: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise UserError("setting.not_a_number", field=field, low=low, high=high) from None
    if not low <= value <= high:
        shown = str(value) if len(str(value)) <= 12 else str(value)[:12] + "…"
        raise UserError("setting.out_of_range", field=field, low=low, high=high, value=shown)
    return value


def _choice(field: str, raw: str, allowed: tuple[str, ...]) -> str:
    value = raw.strip().lower()
    if value not in allowed:
        raise UserError("setting.not_allowed", field=field, allowed=", ".join(allowed))
    return value


def _channel(field: str, raw: str) -> str | None:
    """A channel name, or None for "off" / "none" (unset)."""
    value = raw.strip()
    if value.lower() in ("off", "none"):
        return None
    if not _CHANNEL.match(value):
        raise UserError("setting.bad_channel", field=field)
    return value.lstrip("#")


def _template(field: str, raw: str, max_len: int, names: tuple[str, ...]) -> str:
    text = check_text(field, raw, max_len, multiline=True)
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(text)
            if name is not None
        ]
    except ValueError:
        raise _bad_template(field, names) from None
    # A placeholder is exactly {name}: a conversion ({member!r}) or a format spec
    # ({member:>30}) is refused like any unknown name, so the renderer never meets one.
    if any(name not in names or spec or conversion for name, spec, conversion in fields):
        raise _bad_template(field, names)
    return text


def _bad_template(field: str, names: tuple[str, ...]) -> UserError:
    if not names:
        return UserError("setting.no_placeholders", field=field)
    return UserError("setting.bad_template", field=field, allowed=_braces(names))


def _braces(names: tuple[str, ...]) -> str:
    return ", ".join("{" + n + "}" for n in names) if names else "none"


def parse_digest(raw: str) -> tuple[int | None, int]:
    value = " ".join(raw.strip().lower().split())
    if value == "off":
        return None, 18 * 60
    match = _DIGEST.match(value)
    if not match:
        raise UserError("setting.bad_digest", field="digest")
    day, hour, minute = match.groups()
    return WEEKDAYS.index(day), int(hour) * 60 + int(minute)


# The keys admins type with `set <key> <value>`, in the order `program` shows them.
SETTING_KEYS = (
    "min-days",
    "min-messages",
    "required-role",
    "conversion-window",
    "code-window",
    "holding-days",
    "welcome-text",
    "rules-text",
    "announce-channel",
    "admin-channel",
    "digest",
    "dm-newcomers",
    "language",
    "coupon-low-stock",
    "risk-mode",
    "detectors-off",
    "young-account-days",
    "velocity",
    "leave-early-count",
    "leave-early-share",
    "empty-count",
    "empty-share",
    "review-deadline",
    "moderator-channel",
    "welcome-channel",
    "log-channel",
)
# The longest value each text setting takes (others: 2000), checked first so the too-long
# refusal names the setting's real limit.
MAX_LENGTH = {"welcome-text": 1000, "rules-text": 2000, "required-role": 100}
RISK_MODES = ("off", "flag", "hold")
DETECTORS = (
    "self-referral",
    "rejoin",
    "young-account",
    "velocity",
    "leave-early",
    "empty",
    "ambiguous",
    "ring",
    "code-guessing",
    "banned",
)
_VELOCITY = re.compile(r"^(\d{1,4})\s*/\s*(\d{1,4})\s*m$")
_DEADLINE = re.compile(r"^(\d{1,3})d\s+(approve|reject)$")


def apply_setting(
    current: ProgramSettings, key: str, raw: str, community_id: int
) -> ProgramSettings:
    """The settings with one admin change applied, or a UserError explaining why not."""
    key = key.strip().lower()
    if key not in SETTING_KEYS:
        raise UserError("setting.unknown", field=key, allowed=", ".join(SETTING_KEYS))
    raw = check_text(key, raw, MAX_LENGTH.get(key, 2000), multiline=True)
    if key == "min-days":
        value = _int_in(key, raw, 0, 365)
        if value > current.conversion_window_days:
            raise UserError(
                "setting.days_beyond_window", field=key, window=current.conversion_window_days
            )
        return replace(current, min_days=value)
    if key == "min-messages":
        return replace(current, min_messages=_int_in(key, raw, 0, 10_000))
    if key == "required-role":
        role = check_text(key, raw, MAX_LENGTH[key])
        return replace(current, required_role=None if role.lower() == "none" else role)
    if key == "conversion-window":
        value = _int_in(key, raw, 1, 365)
        if value < current.min_days:
            raise UserError("setting.window_below_days", field=key, min_days=current.min_days)
        return replace(current, conversion_window_days=value)
    if key == "code-window":
        return replace(current, code_window_days=_int_in(key, raw, 0, 90))
    if key == "holding-days":
        return replace(current, holding_days=_int_in(key, raw, 0, 365))
    if key == "welcome-text":
        if raw.strip().lower() == "off":
            return replace(current, welcome_off=True)
        text = _template(key, raw, MAX_LENGTH[key], WELCOME_PLACEHOLDERS)
        return replace(
            current, welcome_off=False, welcome_text=None if text.lower() == "default" else text
        )
    if key in ("welcome-channel", "log-channel"):
        channel = _channel(key, raw)
        where = community_id if channel else None
        if key == "welcome-channel":
            return replace(current, welcome_community_id=where, welcome_channel=channel)
        return replace(current, log_community_id=where, log_channel=channel)
    if key == "rules-text":
        text = _template(key, raw, MAX_LENGTH[key], ())
        return replace(current, rules_text=None if text.lower() == "default" else text)
    if key == "announce-channel":
        channel = _channel(key, raw)
        return replace(
            current,
            announce_community_id=community_id if channel else None,
            announce_channel=channel,
        )
    if key == "admin-channel":
        channel = _channel(key, raw)
        return replace(
            current, admin_community_id=community_id if channel else None, admin_channel=channel
        )
    if key == "digest":
        weekday, minute = parse_digest(raw)
        return replace(current, digest_weekday=weekday, digest_minute=minute)
    if key == "dm-newcomers":
        return replace(current, dm_newcomers=_choice(key, raw, DM_MODES))
    if key == "language":
        return replace(current, language=_choice(key, raw, LANGUAGES))
    if key == "coupon-low-stock":
        return replace(current, coupon_low_stock=_int_in(key, raw, 0, 100_000))
    return _apply_fraud_setting(current, key, raw, community_id)


def _apply_fraud_setting(
    current: ProgramSettings, key: str, raw: str, community_id: int
) -> ProgramSettings:
    value = " ".join(raw.strip().lower().split())
    if key == "risk-mode":
        return replace(current, risk_mode=_choice(key, raw, RISK_MODES))
    if key == "detectors-off":
        if value == "none":
            return replace(current, detectors_off=())
        names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
        unknown = [n for n in names if n not in DETECTORS]
        if unknown or not names:
            raise UserError(
                "setting.not_allowed",
                field=key,
                allowed="none, or a comma list of: " + ", ".join(DETECTORS),
            )
        return replace(current, detectors_off=names)
    if key == "young-account-days":
        return replace(current, young_account_days=_int_in(key, raw, 0, 3650))
    if key == "velocity":
        match = _VELOCITY.match(value)
        if (
            not match
            or not 1 <= int(match.group(1)) <= 1000
            or not 1 <= int(match.group(2)) <= 1440
        ):
            raise UserError("setting.bad_velocity", field=key)
        return replace(
            current, velocity_count=int(match.group(1)), velocity_minutes=int(match.group(2))
        )
    if key == "leave-early-count":
        return replace(current, leave_early_count=_int_in(key, raw, 1, 1000))
    if key == "empty-count":
        return replace(current, empty_count=_int_in(key, raw, 1, 1000))
    if key == "leave-early-share":
        return replace(current, leave_early_share=_int_in(key, raw.rstrip("% "), 1, 100))
    if key == "empty-share":
        return replace(current, empty_share=_int_in(key, raw.rstrip("% "), 1, 100))
    if key == "review-deadline":
        if value == "off":
            return replace(current, review_deadline_days=None)
        match = _DEADLINE.match(value)
        if not match or not 1 <= int(match.group(1)) <= 365:
            raise UserError("setting.bad_deadline", field=key)
        return replace(
            current, review_deadline_days=int(match.group(1)), review_deadline_action=match.group(2)
        )
    channel = _channel(key, raw)
    return replace(
        current,
        moderator_community_id=community_id if channel else None,
        moderator_channel=channel,
    )


def describe_digest(settings: ProgramSettings) -> str:
    if settings.digest_weekday is None:
        return "off"
    hour, minute = divmod(settings.digest_minute, 60)
    return f"{WEEKDAYS[settings.digest_weekday]} {hour:02d}:{minute:02d} UTC"
