"""Peak RSS of a process serving ``status`` over 1,000,000 stored referrals.

Benchmark ``status_latency``'s 1M case, run in a child process that reports its own ``VmHWM``
from /proc/self/status: the peak reported here. Seeding happens in the parent and is not counted;
the child opens the app, migrates (a no-op) and answers the status calls.

The child's ``ru_maxrss`` (wait4 rusage, the per-child form of ``getrusage(RUSAGE_CHILDREN)``) is
recorded too, but on Linux it keeps the high-water mark of the image the child was forked from
(the parent, large after seeding) across ``exec``, so it is an upper bound, not the child's own.
"""

from __future__ import annotations

from benchmarks import status_latency
from benchmarks.common import Report, log

NAME = "peak_rss"
TARGET_MB = 150


def run() -> Report:
    report = Report(NAME)
    db = status_latency.seeded(status_latency.LARGE)
    log(f"{NAME}: status child over {db.layout.referrals:,} referrals")
    child = status_latency.run_child(db)
    hwm_mb = child.data["vm_hwm_kib"] / 1024
    maxrss_mb = child.ru_maxrss_kib / 1024
    report.add("peak RSS (VmHWM), status over 1M refs", f"{hwm_mb:.1f} MB", f"<= {TARGET_MB} MB",
               hwm_mb <= TARGET_MB)  # fmt: skip
    report.add("ru_maxrss incl. pre-exec fork image", f"{maxrss_mb:.1f} MB")
    report.data = {
        "referrals": db.layout.referrals,
        "vm_hwm_kib": child.data["vm_hwm_kib"],
        "ru_maxrss_kib": child.ru_maxrss_kib,
        "peak_mb": hwm_mb,
        "ru_maxrss_note": "includes the parent's pre-exec image (fork), an upper bound",
        "status_p50_ms": child.data["p50_ms"],
        "status_p99_ms": child.data["p99_ms"],
        "samples": child.data["samples"],
    }
    return report
