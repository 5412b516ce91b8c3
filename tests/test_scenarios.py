"""Every scenario under tests/scenarios (and the bundled demo) runs on every backend."""

from pathlib import Path

import pytest

from bot.scenario import ScenarioRunner
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
