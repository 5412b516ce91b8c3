"""One aiohttp application, off by default: ``/healthz``, ``/readyz`` and ``/metrics``.

It is an adapter like a platform: it reads the App's state and the database, and renders.
``/healthz`` answers as long as the event loop does; ``/readyz`` runs the readiness checks;
``/metrics`` refreshes the outbox gauges from the database, then renders the registry.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bot import metrics
from bot.http.health import read_backlog, readiness
from config.settings import listen_address

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)


class HealthServer:
    def __init__(self, app: App) -> None:
        self.app = app
        address = listen_address(app.settings.http)
        assert address is not None, "http.listen is empty"
        self.host, self.port = address
        self._runner: web.AppRunner | None = None

    def application(self) -> web.Application:
        web_app = web.Application()
        web_app.router.add_get("/healthz", self.healthz)
        web_app.router.add_get("/readyz", self.readyz)
        web_app.router.add_get("/metrics", self.metrics)
        return web_app

    async def start(self) -> None:
        metrics.install()
        self._runner = web.AppRunner(self.application(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        addresses = self._runner.addresses
        if addresses:  # port 0 (tests): the one the system chose
            self.port = int(addresses[0][1])
        log.info("event=http.listening host=%s port=%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def readyz(self, _request: web.Request) -> web.Response:
        result = await readiness(self.app)
        return web.json_response(result.as_json(), status=200 if result.ready else 503)

    async def metrics(self, _request: web.Request) -> web.Response:
        try:
            backlog = await read_backlog(self.app)
        except Exception as exc:  # the rest of the metrics are still worth a scrape
            log.warning("event=http.metrics_backlog_failed error=%s", type(exc).__name__)
        else:
            metrics.set_outbox_backlog(backlog, list(self.app.platforms), self.app.clock.now())
        body = metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
