"""Every sentence the bot can write is HTML Telegram accepts, and fits a message or is split."""

import string

import pytest

from bot.engine.admin import Actor
from bot.engine.text import Mention, t
from bot.platforms.telegram import render
from config.i18n import Catalog
from tests.fakes.telegram_api import parse_html
from tests.platforms.telegram.conftest import World, texts
from tests.platforms.telegram.helpers import group_with_member

CATALOG = Catalog()
COUNTS = (0, 1, 2, 3, 5, 11, 21, 101)  # reaches every CLDR plural form of the catalogs
NASTY = "Fan <b>club</b> & <setting> @durov"  # what a user could name a group, a tier, a pool


def _names(entry: object) -> set[str]:
    forms = entry.values() if isinstance(entry, dict) else [entry]
    return {name for form in forms for _, name, _, _ in string.Formatter().parse(form) if name}


CASES = [
    (language, key)
    for language in CATALOG.languages
    for key, entry in CATALOG.messages[language].items()
]


@pytest.mark.parametrize(("language", "key"), CASES, ids=[f"{lang}:{k}" for lang, k in CASES])
def test_every_catalog_entry_is_html_telegram_can_parse(language: str, key: str):
    entry = CATALOG.messages[language][key]
    names = _names(entry)
    for count in COUNTS if isinstance(entry, dict) else (None,):
        values: dict[str, object] = {name: NASTY for name in names}
        if "member" in names:
            values["member"] = Mention("42", NASTY)
        if count is not None:
            values["count"] = count
        html = render.to_html(CATALOG, t(key, **values), language)
        text, _entities = parse_html(html)  # raises as Telegram's 400 "can't parse entities"
        if names - {"count"}:
            assert "& <setting>" in text  # the values arrived as text, not as markup


async def test_program_is_delivered(world: World):
    fake = world.fake
    group, owner, _alice = await group_with_member(world)
    fake.say(group, owner, "/program")
    [answer] = texts(await world.settle(), owner["id"])
    assert "Change with /set <setting> <value>" in answer


async def test_a_member_named_like_a_username_never_becomes_a_link(world: World):
    fake = world.fake
    owner = fake.user("Olga", started=True)
    group = fake.add_group("Fans", owner)
    durov = fake.user("@durov", started=True)  # a display name anyone can choose
    fake.join(group, durov)
    for line in ("/set min-days 0", "/set min-messages 1"):
        fake.say(group, owner, line)
    await world.settle()
    fake.say(group, durov, "/invite")
    [dm] = texts(await world.settle(), durov["id"])
    link = next(word for word in dm.split() if word.startswith("https://t.me/+"))
    bob = fake.user("Bob")
    fake.join(group, bob, link)
    fake.say(group, bob, "hi")
    await world.settle()
    await world.advance(86400)
    fake.say(group, owner, "/leaderboard")
    await world.settle()
    [board] = [s for s in fake.sent if s.chat_id == group and s.text.startswith("Top referrers")]
    assert "durov" in board.text
    assert [e for e in board.entities if e["type"] == "mention"] == []  # no link to @durov


def test_a_long_text_is_split_on_line_ends_into_valid_parts():
    lines = [f'• <a href="tg://user?id={i}">Member &amp; {i}</a>: ' + "x" * 70 for i in range(200)]
    html = "\n".join(lines)
    parts = render.split_message(html)
    assert len(parts) > 1 and "\n".join(parts) == html  # nothing lost, cut only at line ends
    for part in parts:
        text, _ = parse_html(part)
        assert len(part) <= 4096 and text
    one_line = "word &amp; <b>x</b> " * 600  # no line end at all
    for part in render.split_message(one_line):
        parse_html(part)
        assert len(part) <= 4096


async def test_long_rules_arrive_in_several_messages(world: World):
    fake = world.fake
    group, owner, alice = await group_with_member(world)
    ref, admin = world.tg.ref(group), Actor(str(owner["id"]), "Olga")
    for n in range(1, 61):  # 60 tiers with long names: far more than one message holds
        await world.app.engine.tier_add(ref, admin, f"Tier{n:02d} " + "y" * 50, str(n),
                                        "points", str(n))  # fmt: skip
    fake.say(group, alice, "/rules")
    sent = texts(await world.settle(), group)
    assert len(sent) >= 2 and all(len(part) <= 4096 for part in sent)
    whole = "\n".join(sent)
    assert all(f"Tier{n:02d}" in whole for n in range(1, 61))
