"""The catalog: every key the code uses exists, plurals follow CLDR, user text is escaped."""

import re
from pathlib import Path

import pytest

from bot.engine.text import Mention, Text, from_json, t, to_json
from config.i18n import Catalog

ROOT = Path(__file__).resolve().parents[2]
KEY = re.compile(r'(?:\bt|UserError|Text)\(\s*"([a-z_][a-z0-9_.\-]*)"')


def used_keys() -> set[str]:
    keys: set[str] = set()
    for folder in ("bot", "commands"):
        for file in (ROOT / folder).rglob("*.py"):
            keys.update(KEY.findall(file.read_text()))
    return keys


def test_every_key_used_in_code_has_an_english_sentence():
    catalog = Catalog()
    missing = sorted(k for k in used_keys() if k not in catalog.messages["en"])
    assert missing == []


def test_every_command_has_a_help_line():
    from commands import REGISTRY

    catalog = Catalog()
    assert [c.name for c in REGISTRY.all() if c.description_key not in catalog.messages["en"]] == []


@pytest.mark.parametrize(("count", "expected"), [(1, "1 day"), (2, "2 days"), (0, "0 days")])
def test_plural_forms(count, expected):
    assert Catalog().render(t("days", count=count)) == expected


def test_user_text_is_escaped_but_the_template_is_not():
    rendered = Catalog().render(
        t(
            "welcome.referred",
            member=Mention("1", "<b>eve</b>"),
            community="<i>x</i>",
            inviter=Mention("2", "al"),
        ),
        escape=lambda s: s.replace("<", "&lt;"),
        mention=lambda m: f"<@{m.user_id}>",
    )
    assert rendered == "Welcome to &lt;i>x&lt;/i>, <@1>! You were invited by <@2>."


def test_an_admin_template_is_user_text_too():
    text = Text("$custom", {"template": "<b>Hi</b> {member}", "member": Mention("1", "<x>")})
    out = Catalog().render(text, escape=lambda s: s.replace("<", "&lt;"))
    assert out == "&lt;b>Hi&lt;/b> @&lt;x>"


def test_text_survives_the_outbox_round_trip():
    text = t(
        "welcome.referred",
        member=Mention("1", "a"),
        community="c",
        inviter=Mention("2", "b"),
        lines=[t("days", count=2)],
    )
    assert from_json(to_json(text)) == text
