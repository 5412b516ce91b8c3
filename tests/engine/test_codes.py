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
