"""Fraud detectors on a seeded synthetic program: recall and false-positive rate."""

from __future__ import annotations

import asyncio

from benchmarks.common import RESULTS, Report
from benchmarks.fraud_program import simulate

NAME = "fraud_recall"


def run() -> Report:
    report = Report(NAME)
    outcome = asyncio.run(simulate(RESULTS / "fraud.db"))
    report.add("fraudulent referrals", f"{outcome.fraud}")
    report.add(
        "recall (fraudulent flagged)", f"{outcome.recall:.1%}", ">= 95%", outcome.recall >= 0.95
    )
    report.add("honest referrals", f"{outcome.honest}")
    report.add(
        "false-positive rate",
        f"{outcome.false_positive_rate:.1%}",
        "<= 2%",
        outcome.false_positive_rate <= 0.02,
    )
    report.add(
        "flags by detector",
        ", ".join(f"{k} {v}" for k, v in sorted(outcome.flags_by_detector.items())),
    )
    report.data = {
        "recall": outcome.recall,
        "false_positive_rate": outcome.false_positive_rate,
        "fraud": outcome.fraud,
        "honest": outcome.honest,
        "missed": outcome.missed,
        "false_positives": outcome.false_positives,
        "flags": outcome.flags_by_detector,
    }
    return report
