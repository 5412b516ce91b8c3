"""Slash commands generated from the neutral registry, and interactions read back into it.

Member commands are top-level (``/invite``, ``/status``...). Admin commands are subcommands of
``/referral-admin`` (default permission: Manage Server), moderator commands of ``/referral-mod``
(default permission: Manage Messages). The default permissions only hide commands in the client;
``dispatch`` checks the audience again with the presser's real permissions.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bot.engine.models import Audience
from bot.engine.text import t
from commands.registry import REGISTRY, Command, Option
from config.i18n import Catalog

ADMIN_GROUP = "referral-admin"
MOD_GROUP = "referral-mod"


def usage_on_discord(command: Command) -> str:
    """How a member types a registry command on Discord (grouped for admins and moderators)."""
    if command.audience == Audience.MEMBER:
        return "/" + command.usage()
    base = ADMIN_GROUP if command.audience == Audience.ADMIN else MOD_GROUP
    return f"/{base} {command.usage()}"


_COMMAND_REF = re.compile(r"(?<![\w/:.<])/([a-z][a-z0-9-]*)")


def discord_catalog(catalog: Catalog) -> Catalog:
    """The catalog with every ``/command`` its sentences name written the Discord way
    (``/tier-edit`` -> ``/referral-admin tier-edit``); values filled in later are untouched."""

    def rewrite(template: Any) -> Any:
        if isinstance(template, dict):
            return {k: rewrite(v) for k, v in template.items()}
        if not isinstance(template, str):
            return template

        def one(match: re.Match[str]) -> str:
            command = REGISTRY.get(match.group(1))
            return usage_on_discord_name(command) if command is not None else match.group(0)

        return _COMMAND_REF.sub(one, template)

    copied = copy.copy(catalog)
    copied.messages = {
        lang: {key: rewrite(value) for key, value in entries.items()}
        for lang, entries in catalog.messages.items()
    }
    return copied


def usage_on_discord_name(command: Command) -> str:
    """``/name`` as a member types it on Discord (admin and moderator commands are grouped)."""
    if command.audience == Audience.MEMBER:
        return "/" + command.name
    base = ADMIN_GROUP if command.audience == Audience.ADMIN else MOD_GROUP
    return f"/{base} {command.name}"


MANAGE_GUILD = 1 << 5
MANAGE_MESSAGES = 1 << 13
GUILD_CONTEXT = 0
MAX_SUBCOMMANDS = 25
MAX_INT = 2**53 - 1  # Discord's integer options are JavaScript numbers

STRING, INTEGER, SUB_COMMAND = 3, 4, 1
USER, CHANNEL, ROLE = 6, 7, 8
TEXT_CHANNELS = [0, 5]  # text and announcement channels

# Discord-only pickers that fill a registry option: (command, picker) -> the option it fills.
# ``/referral-admin set setting:announce-channel channel:#news`` reads as ``set ... #news``.
PICKERS: dict[str, tuple[tuple[str, int], ...]] = {
    "set": (("channel", CHANNEL), ("role", ROLE)),
    "tier-add": (("role", ROLE),),
    "tier-edit": (("role", ROLE),),
    "referee-reward": (("role", ROLE),),
}
PICKED = "value"  # the registry option a picker fills

# Options whose values come from the engine while the member types (names of rewards, tiers).
AUTOCOMPLETE = {("redeem", "reward"), ("tier-edit", "name"), ("tier-remove", "name")}


def _describe(catalog: Catalog, key: str, fallback: str, **values: Any) -> str:
    try:
        text = catalog.render(t(key, **values))
    except KeyError:
        text = fallback
    text = " ".join(text.split()) or fallback
    return text if len(text) <= 100 else text[:99] + "…"


# Options whose catalog key differs from their name ("other" would read as a plural form).
OPTION_KEYS = {"other": "other_member"}


def _option_key(name: str) -> str:
    return f"discord.option.{OPTION_KEYS.get(name, name)}"


def _option_type(o: Option) -> int:
    if o.kind == "int":
        return INTEGER
    if o.kind == "member":
        return USER
    return STRING


def option_payload(catalog: Catalog, command: Command, o: Option) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "type": _option_type(o),
        "name": o.name,
        "description": _describe(catalog, _option_key(o.name), o.name)
        if _has(catalog, _option_key(o.name))
        else _describe(catalog, "discord.option.generic", o.name, option=o.name),
        # an option a picker can fill is optional: the picker or the typed value
        "required": o.required and not (command.name in PICKERS and o.name == PICKED),
    }
    if o.kind == "member":
        return payload
    if o.kind == "int":
        payload["min_value"] = max(o.min_value, -MAX_INT)
        payload["max_value"] = min(o.max_value, MAX_INT)
    elif o.kind == "choice":
        payload["choices"] = [{"name": c, "value": c} for c in o.choices[:25]]
    else:
        payload["max_length"] = min(o.max_length, 6000)
        if (command.name, o.name) in AUTOCOMPLETE:
            payload["autocomplete"] = True
    return payload


def _has(catalog: Catalog, key: str) -> bool:
    return any(key in messages for messages in catalog.messages.values())


def _options(catalog: Catalog, command: Command) -> list[dict[str, Any]]:
    options = [option_payload(catalog, command, o) for o in command.options]
    for name, kind in PICKERS.get(command.name, ()):
        picker: dict[str, Any] = {
            "type": kind,
            "name": name,
            "description": _describe(catalog, f"discord.option.{name}", name),
            "required": False,
        }
        if kind == CHANNEL:
            picker["channel_types"] = TEXT_CHANNELS
        options.append(picker)
    return sorted(options, key=lambda o: not o["required"])  # Discord: required first


def _description(catalog: Catalog, command: Command) -> str:
    return _describe(catalog, command.description_key, command.name)


def _groups(audience: Audience, commands: list[Command]) -> list[tuple[str, list[Command]]]:
    base = ADMIN_GROUP if audience == Audience.ADMIN else MOD_GROUP
    chunks = [commands[i : i + MAX_SUBCOMMANDS] for i in range(0, len(commands), MAX_SUBCOMMANDS)]
    return [(base if i == 0 else f"{base}-{i + 1}", chunk) for i, chunk in enumerate(chunks)]


def build_payload(catalog: Catalog, commands: Iterable[Command]) -> list[dict[str, Any]]:
    """The application commands to sync, in a stable order (their hash decides re-syncs)."""
    by_audience: dict[Audience, list[Command]] = {a: [] for a in Audience}
    for c in commands:
        by_audience[c.audience].append(c)
    payload: list[dict[str, Any]] = [
        {
            "type": 1,
            "name": c.name,
            "description": _description(catalog, c),
            "options": _options(catalog, c),
            "contexts": [GUILD_CONTEXT],
        }
        for c in by_audience[Audience.MEMBER]
    ]
    for audience, permission, key in (
        (Audience.ADMIN, MANAGE_GUILD, "discord.group.admin"),
        (Audience.MODERATOR, MANAGE_MESSAGES, "discord.group.moderator"),
    ):
        for name, chunk in _groups(audience, by_audience[audience]):
            payload.append(
                {
                    "type": 1,
                    "name": name,
                    "description": _describe(catalog, key, name),
                    "default_member_permissions": str(permission),
                    "contexts": [GUILD_CONTEXT],
                    "options": [
                        {
                            "type": SUB_COMMAND,
                            "name": c.name,
                            "description": _description(catalog, c),
                            "options": _options(catalog, c),
                        }
                        for c in chunk
                    ],
                }
            )
    return payload


def tree_hash(payload: list[dict[str, Any]]) -> str:
    encoded = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode()).hexdigest()


def is_group(name: str) -> bool:
    return any(
        name == base or (name.startswith(base + "-") and name[len(base) + 1 :].isdigit())
        for base in (ADMIN_GROUP, MOD_GROUP)
    )


@dataclass(frozen=True, slots=True)
class Invocation:
    command: str
    named: dict[str, Any]
    focused: str | None = None  # autocomplete: the option being typed
    typed: str = ""


def read_invocation(data: dict[str, Any]) -> Invocation:
    """Interaction data -> the registry command name and its named option values."""
    name = str(data.get("name", ""))
    options: list[dict[str, Any]] = list(data.get("options") or [])
    if is_group(name):
        sub = next((o for o in options if o.get("type") == SUB_COMMAND), None)
        if sub is None:
            return Invocation("", {})
        name, options = str(sub["name"]), list(sub.get("options") or [])
    named: dict[str, Any] = {}
    focused, typed = None, ""
    resolved: dict[str, Any] = dict(data.get("resolved") or {})
    for o in options:
        if o.get("focused"):
            focused, typed = str(o["name"]), str(o.get("value", ""))
            continue
        kind, value = o.get("type"), o.get("value")
        if kind in (CHANNEL, ROLE) and name in PICKERS:
            bucket = "channels" if kind == CHANNEL else "roles"
            found = (resolved.get(bucket) or {}).get(str(value)) or {}
            picked = found.get("name") or str(value)
            named[PICKED] = f"#{picked}" if kind == CHANNEL else picked
            continue
        named[str(o["name"])] = str(value) if kind == USER else value
    return Invocation(name, named, focused, typed)
