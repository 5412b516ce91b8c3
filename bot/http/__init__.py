"""The optional HTTP listener: health, readiness and Prometheus metrics (``[http] listen``)."""

from bot.http.server import HealthServer

__all__ = ["HealthServer"]
