from bot.engine import codes


def test_codes_have_enough_entropy_and_no_look_alikes():
    assert codes.ENTROPY_BITS >= 40
    assert not set("0O1IL") & set(codes.ALPHABET)
    assert len({codes.generate() for _ in range(5000)}) == 5000


def test_typed_codes_are_forgiving():
    code = codes.generate()
    shown = codes.display(code)
    for typed in (shown, shown.lower(), f"  {code[:3]} {code[3:7]}-{code[7:]} ", code):
        assert codes.normalize(typed) == code


def test_things_that_cannot_be_codes():
    for typed in ("", "hello", "0OIL1-0OIL1", "ABCDE-FGHJK-MN", "ABCDE-FGHJ!"):
        assert codes.normalize(typed) is None


def test_codes_fold_full_width_letters_and_unicode_dashes():
    code = codes.generate()
    shown = codes.display(code)
    full_width = "".join(chr(ord(ch) + 0xFEE0) for ch in shown)  # what CJK keyboards type
    assert full_width != shown
    for dash in ("\u2010", "\u2011", "\u2012", "\u2013", "\u2014", "\u2212", "\uff0d", "\u30fc"):
        assert codes.normalize(shown.replace("-", dash)) == code, hex(ord(dash))
    assert codes.normalize(full_width) == code
    assert codes.normalize(full_width.lower()) == code


def test_a_pasted_link_carries_its_code():
    code = codes.generate()
    assert codes.code_in_link(f"https://t.me/the_bot?start={code}") == code
    assert codes.code_in_link(f"console://join/{codes.display(code)}") == code
    assert codes.link_forms("discord.gg/AbC12") == [
        "https://discord.gg/AbC12",
        "http://discord.gg/AbC12",
        "discord.gg/AbC12",
    ]
    assert codes.link_forms(codes.display(code)) == []
