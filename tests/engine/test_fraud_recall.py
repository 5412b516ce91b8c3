"""The synthetic program of benchmarks/fraud_program.py, with floors looser than the targets
(recall >= 95 %, false positives <= 2 % in `make bench`), so that a regression fails here."""

from benchmarks.fraud_program import simulate
from bot.engine.clock import HOUR


async def test_detectors_catch_fraud_and_spare_honest_members(tmp_path):
    outcome = await simulate(tmp_path / "fraud.db", seed=11, step=6 * HOUR)
    assert outcome.fraud == 50 and outcome.honest >= 490
    assert outcome.recall >= 0.90, outcome.missed
    assert outcome.false_positive_rate <= 0.04, outcome.false_positives
