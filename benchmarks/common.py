"""What every benchmark shares: the machine, results, percentiles, files, the app."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.app import App
from bot.engine.clock import ManualClock
from bot.platforms.console import ConsolePlatform
from config.settings import load

RESULTS = Path(__file__).parent / "results"
NOW = ManualClock().now()  # 2026-01-01T00:00:00Z: every seeded database is "now" at this time


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    u = platform.uname()
    return {
        "cpu": _cpu_model(),
        "processor": platform.processor(),
        "uname": f"{u.system} {u.release} {u.machine}",
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }


def machine_line(m: dict[str, Any] | None = None) -> str:
    m = m or machine()
    return (
        f"machine: {m['cpu']} | {m['uname']} | cpus={m['cpu_count']} | "
        f"python {m['python']} | sqlite {m['sqlite']}"
    )


@dataclass(frozen=True, slots=True)
class Row:
    metric: str
    value: str
    target: str = ""
    met: bool | None = None  # reported next to the target, never asserted


@dataclass(slots=True)
class Report:
    name: str
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, metric: str, value: str, target: str = "", met: bool | None = None) -> None:
        self.rows.append(Row(metric, value, target, met))

    def write(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        body = {
            "benchmark": self.name,
            "machine": machine(),
            "seconds": round(self.seconds, 2),
            "rows": [dataclasses.asdict(r) for r in self.rows],
            "data": self.data,
        }
        path.write_text(json.dumps(body, indent=2) + "\n")
        return path


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def fresh(path: Path) -> Path:
    """Remove a SQLite database and its WAL/SHM/journal files."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def make_app(path: Path, clock: ManualClock) -> App:
    """The app as ``bot.app`` composes it, on ``path``, with a silent console platform."""
    settings = load()
    settings = dataclasses.replace(
        settings, database=dataclasses.replace(settings.database, url=sqlite_url(path))
    )
    return App(settings, [ConsolePlatform(out=lambda _line: None)], clock=clock)


def log(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)
