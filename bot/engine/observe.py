"""A neutral hook for counting what happens; metrics are kept outside the engine.

The engine, the storage layer and the runtime call ``emit(name, value, **labels)`` at the few
places where a fact becomes true (a join processed, a referral changing status, a grant, a
flag...). Nothing listens by default; ``bot/metrics.py`` subscribes when the process runs. A
fact that happens inside a transaction is emitted with ``after_commit`` so that a rollback is
never counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

Listener = Callable[[str, float, dict[str, str]], None]
_listeners: list[Listener] = []


class _CommitHooks(Protocol):
    def after_commit(self, hook: Callable[[], None]) -> None: ...


def subscribe(listener: Listener) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def unsubscribe(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def listening() -> bool:
    """Whether anyone counts; callers skip work done only for the metrics when nobody does."""
    return bool(_listeners)


def emit(name: str, value: float = 1.0, **labels: str) -> None:
    """Tell every listener; a listener that fails is logged and never breaks the caller."""
    for listener in list(_listeners):
        try:
            listener(name, value, labels)
        except Exception:
            log.exception("event=observe.listener_failed name=%s", name)


def after_commit(tx: _CommitHooks, name: str, value: float = 1.0, **labels: str) -> None:
    """Emit once ``tx``'s transaction has committed (never if it rolls back)."""
    if _listeners:
        tx.after_commit(lambda: emit(name, value, **labels))
