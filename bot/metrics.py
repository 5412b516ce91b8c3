"""Prometheus metrics: one registry for the process, fed by the neutral ``observe`` hook.

Other modules never import prometheus_client: they call ``bot.engine.observe.emit(...)`` and
``install()`` maps those facts onto the metrics below. Gauges that describe the database (the
outbox backlog) are read when ``/metrics`` is scraped (``bot/http/``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bot.engine import observe
from bot.engine.models import OutboxBacklog

REGISTRY = CollectorRegistry(auto_describe=True)
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

JOINS = Counter(
    "referral_bot_joins",
    "Joins processed, by platform, attribution source and outcome (new, rejoin, duplicate).",
    ("platform", "source", "outcome"),
    registry=REGISTRY,
)
REFERRAL_TRANSITIONS = Counter(
    "referral_bot_referral_transitions",
    "Referral status changes; a new referral counts as from_status 'new'.",
    ("from_status", "to_status"),
    registry=REGISTRY,
)
GRANTS = Counter(
    "referral_bot_grants",
    "Rewards granted, by reward kind and side (referrer or referee).",
    ("kind", "side"),
    registry=REGISTRY,
)
FLAGS = Counter(
    "referral_bot_fraud_flags",
    "Fraud flags raised, by detector.",
    ("detector",),
    registry=REGISTRY,
)
COMMANDS = Counter(
    "referral_bot_commands",
    "Commands run, by name and outcome (ok, user_error, forbidden, unknown, error).",
    ("command", "outcome"),
    registry=REGISTRY,
)
COMMAND_SECONDS = Histogram(
    "referral_bot_command_seconds",
    "Time to answer a command, by name.",
    ("command",),
    buckets=_LATENCY,
    registry=REGISTRY,
)
OUTBOX_DEPTH = Gauge(
    "referral_bot_outbox_depth",
    "Outbox items waiting for delivery (neither delivered nor given up), by platform.",
    ("platform",),
    registry=REGISTRY,
)
OUTBOX_OLDEST = Gauge(
    "referral_bot_outbox_oldest_age_seconds",
    "Age of the oldest item waiting in the outbox, by platform (0 when none waits).",
    ("platform",),
    registry=REGISTRY,
)
DELIVERY_ATTEMPTS = Counter(
    "referral_bot_delivery_attempts",
    "Outbox delivery attempts, by platform.",
    ("platform",),
    registry=REGISTRY,
)
DELIVERY_FAILURES = Counter(
    "referral_bot_delivery_failures",
    "Outbox deliveries the platform did not accept, by platform and whether a retry follows.",
    ("platform", "retryable"),
    registry=REGISTRY,
)
DELIVERY_RATE_LIMITED = Counter(
    "referral_bot_delivery_rate_limited",
    "Deliveries refused with a rate limit (HTTP 429 / retry_after), by platform.",
    ("platform",),
    registry=REGISTRY,
)
JOB_SECONDS = Histogram(
    "referral_bot_job_seconds",
    "Duration of scheduled job runs, by job.",
    ("job",),
    buckets=_LATENCY,
    registry=REGISTRY,
)
JOB_FAILURES = Counter(
    "referral_bot_job_failures",
    "Scheduled job runs that raised, by job.",
    ("job",),
    registry=REGISTRY,
)
JOB_LAST_SUCCESS = Gauge(
    "referral_bot_job_last_success_timestamp_seconds",
    "When each job last finished without error (Unix time).",
    ("job",),
    registry=REGISTRY,
)
WRITER_GROUP_SIZE = Histogram(
    "referral_bot_writer_group_size",
    "Writes committed together in one group-commit transaction.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000),
    registry=REGISTRY,
)
WRITER_COMMIT_SECONDS = Histogram(
    "referral_bot_writer_commit_seconds",
    "Duration of one group-commit transaction, from begin to commit.",
    buckets=_LATENCY,
    registry=REGISTRY,
)
PLATFORM_UP = Gauge(
    "referral_bot_platform_connected",
    "1 while a platform is started and connected, 0 while it is being retried.",
    ("platform",),
    registry=REGISTRY,
)


def _record(name: str, value: float, labels: dict[str, str]) -> None:
    if name == "join":
        JOINS.labels(labels["platform"], labels["source"], labels["outcome"]).inc(value)
    elif name == "referral.transition":
        REFERRAL_TRANSITIONS.labels(labels["from_status"], labels["to_status"]).inc(value)
    elif name == "grant":
        GRANTS.labels(labels["kind"], labels["side"]).inc(value)
    elif name == "flag":
        FLAGS.labels(labels["detector"]).inc(value)
    elif name == "command":
        COMMANDS.labels(labels["command"], labels["outcome"]).inc()
        COMMAND_SECONDS.labels(labels["command"]).observe(value)
    elif name == "delivery.attempt":
        DELIVERY_ATTEMPTS.labels(labels["platform"]).inc(value)
    elif name == "delivery.failure":
        DELIVERY_FAILURES.labels(labels["platform"], labels["retryable"]).inc(value)
        if labels.get("rate_limited") == "true":
            DELIVERY_RATE_LIMITED.labels(labels["platform"]).inc(value)
    elif name == "job":
        JOB_SECONDS.labels(labels["job"]).observe(value)
        if labels["outcome"] == "ok":
            JOB_LAST_SUCCESS.labels(labels["job"]).set_to_current_time()
        else:
            JOB_FAILURES.labels(labels["job"]).inc()
    elif name == "writer.group":
        WRITER_GROUP_SIZE.observe(float(labels["size"]))
        WRITER_COMMIT_SECONDS.observe(value)
    elif name == "platform.connected":
        PLATFORM_UP.labels(labels["platform"]).set(value)


def install() -> None:
    """Start counting (idempotent): subscribe the metrics to the ``observe`` hook."""
    observe.subscribe(_record)


def set_outbox_backlog(backlog: list[OutboxBacklog], platforms: list[str], now: int) -> None:
    """Outbox depth and the oldest waiting item's age; platforms with nothing waiting read 0."""
    found = {b.platform: b for b in backlog}
    for platform in sorted(set(platforms) | set(found)):
        entry = found.get(platform)
        waiting = entry.waiting if entry else 0
        oldest = entry.oldest_created_at if entry else None
        OUTBOX_DEPTH.labels(platform).set(waiting)
        OUTBOX_OLDEST.labels(platform).set(max(0, now - oldest) if oldest is not None else 0)


def exposition() -> bytes:
    """The Prometheus text format of every metric."""
    return generate_latest(REGISTRY)
