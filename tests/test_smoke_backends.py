from tests.conftest import Harness


async def test_a_join_is_welcomed_on_every_backend(harness: Harness):
    await harness.console.join("alice")
    said = await harness.settle()
    assert "[bot -> #lounge] Welcome to lounge, @alice!" in said
