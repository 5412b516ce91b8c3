"""The health listener: /healthz, /readyz with its reasons, /metrics in the Prometheus format."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from bot.app import App
from bot.engine.clock import ManualClock
from bot.platforms.console import ConsolePlatform
from tests.conftest import _truncate_pg, settings_for
from tests.fakes.outage import Switch


def build(url: str) -> tuple[App, ConsolePlatform, list[str]]:
    settings = settings_for(url)
    settings = replace(settings, http=replace(settings.http, listen="127.0.0.1:0"))
    lines: list[str] = []
    console = ConsolePlatform(out=lines.append)
    return App(settings, [console], clock=ManualClock()), console, lines


@pytest.fixture
async def running(db_url: str) -> AsyncIterator[tuple[App, ConsolePlatform]]:
    app, console, _lines = build(db_url)
    await app.start()
    await console.add_community("lounge")
    try:
        yield app, console
    finally:
        await app.close()


async def get(app: App, path: str) -> tuple[int, str]:
    assert app.http is not None
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{app.http.port}{path}") as response,
    ):
        return response.status, await response.text()


async def get_json(app: App, path: str) -> tuple[int, dict]:
    assert app.http is not None
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{app.http.port}{path}") as response,
    ):
        return response.status, await response.json()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition (parsed by prometheus-client's own parser)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_healthz_and_readyz_answer_when_everything_runs(running):
    app, _console = running
    assert await get_json(app, "/healthz") == (200, {"alive": True})
    status, body = await get_json(app, "/readyz")
    assert status == 200 and body["ready"] is True
    assert set(body["checks"]) == {"database", "platform:console", "scheduler", "outbox"}
    assert body["checks"]["scheduler"] == {"ok": True, "reason": "running"}


async def test_metrics_parse_and_move_when_joins_and_commands_are_processed(running):
    app, console = running
    _, text = await get(app, "/metrics")
    before = samples(text)
    await console.join("alice")
    await console.join("bob", via="alice")
    await console.say("alice", "/status")
    await console.say("alice", "/tier-add Gold 1 points 10")  # not an admin: forbidden
    await app.outbox.drain()
    status, text = await get(app, "/metrics")
    assert status == 200
    after = samples(text)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    joins = "referral_bot_joins_total"
    assert moved(joins, platform="console", source="organic", outcome="new") == 1
    assert moved(joins, platform="console", source="invite-link", outcome="new") == 1
    transitions = "referral_bot_referral_transitions_total"
    assert moved(transitions, from_status="new", to_status="pending") == 1
    commands = "referral_bot_commands_total"
    assert moved(commands, command="status", outcome="ok") == 1
    assert moved(commands, command="tier-add", outcome="forbidden") == 1
    assert moved("referral_bot_command_seconds_count", command="status") == 1
    assert moved("referral_bot_delivery_attempts_total", platform="console") >= 2
    assert moved("referral_bot_writer_group_size_count") >= 2
    assert value(after, "referral_bot_platform_connected", platform="console") == 1
    deadline = time.monotonic() + 15  # the running worker marks its last items delivered
    while (
        value(
            samples((await get(app, "/metrics"))[1]),
            "referral_bot_outbox_depth",
            platform="console",
        )
        != 0
    ):
        assert time.monotonic() < deadline, "the outbox depth did not go back to 0"
        await asyncio.sleep(0.05)


async def test_a_conversion_and_its_grant_are_counted(running):
    app, console = running
    _, text = await get(app, "/metrics")
    before = samples(text)
    await console.set_role("admin", "admin")
    await console.say("admin", "/tier-add Bronze 1 points 10")
    await console.join("alice")
    await console.join("bob", via="alice")
    for _ in range(3):
        await console.say("bob", "hello")
    assert isinstance(app.clock, ManualClock)
    app.clock.advance(3 * 86400 + 60)
    await app.run_jobs()
    after = samples((await get(app, "/metrics"))[1])
    name = "referral_bot_referral_transitions_total"
    assert (
        value(after, name, from_status="pending", to_status="converted")
        - value(before, name, from_status="pending", to_status="converted")
        == 1
    )
    grants = "referral_bot_grants_total"
    assert (
        value(after, grants, kind="points", side="referrer")
        - value(before, grants, kind="points", side="referrer")
        == 1
    )
    job = "referral_bot_job_last_success_timestamp_seconds"
    assert value(after, job, job="conversion_sweep") > 0


async def test_readyz_says_the_outbox_is_stuck_and_the_scheduler_is_not_running(db_url: str):
    app, console, _lines = build(db_url)
    await app.open()  # storage and platforms, no scheduler and no worker
    from bot.http import HealthServer

    app.http = HealthServer(app)
    await app.http.start()
    try:
        await console.add_community("lounge")
        now = app.clock.now()
        limit = app.settings.http.outbox_stuck_seconds
        old = now - limit - 60
        row = {
            "platform": "console",
            "kind": "message",
            "payload": '{"community":"lounge","text":{"key":"x","values":{}}}',
            "dedupe_key": "stuck-test",
            "next_attempt_at": old,
            "created_at": old,
            "attempts": 0,
        }
        await app.db.write(lambda repo: repo.add_outbox([row]))
        status, body = await get_json(app, "/readyz")
        assert status == 503 and body["ready"] is False
        assert body["checks"]["outbox"] == {
            "ok": False,
            "reason": f"console: an item has been due for {limit + 60}s (limit {limit}s)",
        }
        assert body["checks"]["scheduler"] == {"ok": False, "reason": "not running"}
        assert body["checks"]["database"]["ok"] is True
        metrics = samples((await get(app, "/metrics"))[1])
        assert value(metrics, "referral_bot_outbox_depth", platform="console") == 1
        age = value(metrics, "referral_bot_outbox_oldest_age_seconds", platform="console")
        assert age == limit + 60
    finally:
        await app.close()


async def test_readyz_flips_when_the_database_goes_away_and_comes_back(pg_ready: str):
    await _truncate_pg(pg_ready)
    pg = make_url(pg_ready)
    switch = Switch(pg.host or "127.0.0.1", pg.port or 5432)
    await switch.start()
    url = pg.set(port=switch.port).render_as_string(hide_password=False)
    app, _console, _lines = build(url)
    await app.start()
    try:
        status, body = await get_json(app, "/readyz")
        assert status == 200, body
        await switch.down()
        status, body = await get_json(app, "/readyz")
        assert status == 503
        assert body["checks"]["database"]["ok"] is False
        assert body["checks"]["database"]["reason"]  # says why
        assert body["checks"]["outbox"] == {
            "ok": False,
            "reason": "unknown: the database did not answer",
        }
        assert (await get_json(app, "/healthz"))[0] == 200  # alive all the same
        await switch.up()
        deadline = time.monotonic() + 15
        while (await get_json(app, "/readyz"))[0] != 200:  # a stale pooled connection first
            assert time.monotonic() < deadline, "readyz did not come back"
            await asyncio.sleep(0.1)
    finally:
        await app.close()
        await switch.stop()


async def test_the_container_probe_asks_healthz(running, monkeypatch):
    from bot.http import probe
    from tests.fakes.outage import free_port

    app, _console = running
    assert app.http is not None
    monkeypatch.setenv("REFERRAL_BOT_HTTP__LISTEN", f"0.0.0.0:{app.http.port}")
    assert await asyncio.to_thread(probe.main) == 0
    monkeypatch.setenv("REFERRAL_BOT_HTTP__LISTEN", f"127.0.0.1:{free_port()}")
    assert await asyncio.to_thread(probe.main) == 1  # nothing answers: unhealthy
    monkeypatch.setenv("REFERRAL_BOT_HTTP__LISTEN", "")
    assert await asyncio.to_thread(probe.main) == 0  # no listener configured: nothing to ask
