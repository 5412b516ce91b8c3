"""Every scenario under tests/scenarios (and the bundled demo) runs on every backend."""

import re
from pathlib import Path

import pytest

from bot.scenario import ScenarioError, ScenarioRunner
from tests.conftest import settings_for

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = [
    *sorted((ROOT / "tests" / "scenarios").glob("*.scenario")),
    ROOT / "examples" / "demo.scenario",
]


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
async def test_scenario(path: Path, db_url: str):
    runner = ScenarioRunner(settings_for(db_url))
    result = await runner.run_file(path)
    assert result.failures == [], "\n".join(result.transcript)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("join bob:x", "user names are letters, digits, _, . and - only"),
        ("join bob via @alice", "user names are letters, digits, _, . and - only"),
        ("ada: /link-program {link-token}", "no /link-program token shown yet"),
        ("join bob in nowhere", "There is no console community called nowhere"),
        ("community #side", "community names are letters, digits, _, . and - only"),
    ],
)
async def test_what_is_a_script_error(line: str, reason: str, db_url: str):
    runner = ScenarioRunner(settings_for(db_url))
    with pytest.raises(ScenarioError, match=re.escape(reason)):
        await runner.run_text(f"community lounge\n{line}\n")
