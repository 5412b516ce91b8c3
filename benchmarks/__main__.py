"""Run the benchmarks: ``python -m benchmarks [join_burst|status_latency|sweep|peak_rss ...]``.

Prints one table (metric, value, target, whether the target was met) and writes
``benchmarks/results/<name>.json`` for each benchmark. Nothing here fails on a missed target.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import sys
import time

from benchmarks.common import Report, machine, machine_line

BENCHMARKS = (
    "join_burst",
    "status_latency",
    "sweep",
    "peak_rss",
    "fraud_recall",
    "discord_burst",
    "telegram_fanout",
    "telegram_crash",
    "processes",
)


def table(reports: list[Report]) -> str:
    header = ("benchmark", "metric", "value", "target", "met")
    lines = [header]
    for report in reports:
        for row in report.rows:
            met = "" if row.met is None else ("yes" if row.met else "NO")
            lines.append((report.name, row.metric, row.value, row.target, met))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def fmt(line: tuple[str, ...]) -> str:
        cells = [
            cell.rjust(w) if i == 2 else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [fmt(lines[0]), rule]
    previous = None
    for line in lines[1:]:
        if previous is not None and line[0] != previous:
            out.append(rule)
        out.append(fmt((line[0] if line[0] != previous else "", *line[1:])))
        previous = line[0]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="name", help=", ".join(BENCHMARKS))
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)
    info = machine()
    print(machine_line(info), flush=True)
    reports = []
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        start = time.perf_counter()
        outcome = getattr(module, "bench", module.run)()
        if inspect.iscoroutine(outcome):  # the adapter benchmarks run their own fakes' loops
            outcome = asyncio.run(outcome)
        report: Report = outcome["report"] if isinstance(outcome, dict) else outcome
        report.seconds = time.perf_counter() - start
        report.write()
        print(f"  {name}: done in {report.seconds:.1f} s", file=sys.stderr, flush=True)
        reports.append(report)
    print()
    print(machine_line(info))
    print(table(reports))
    print(f"\nresults: benchmarks/results/{{{','.join(names)}}}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
