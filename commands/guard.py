"""Members can't flood the bot, and refused privileged attempts leave a trace in the log.

Every command line and button press passes ``dispatch()``, so the guard lives there and every
platform gets it. State is per engine (one per app) and in memory: a flood is a matter of
seconds, and a restart forgetting it is harmless. Time comes from the engine's clock.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from weakref import WeakKeyDictionary

from bot.engine.service import ReferralEngine

log = logging.getLogger(__name__)
_PRUNE_AT = 10_000  # members tracked before the quiet ones are forgotten


class Verdict(Enum):
    RUN = "run"
    SLOW_DOWN = "slow-down"  # the first line over the budget: answered once
    DROP = "drop"  # every further line in the same window: silence


@dataclass
class _Member:
    times: deque[int] = field(default_factory=deque)
    warned: bool = False


class CommandGuard:
    def __init__(self, engine: ReferralEngine) -> None:
        self.ctx = engine.ctx
        self._members: dict[tuple[str, str], _Member] = {}
        self._forbidden: dict[tuple[str, str, str], int] = {}

    def admit(self, platform: str, user_id: str) -> tuple[Verdict, int]:
        """Whether this member's line runs now; with SLOW_DOWN, the seconds to wait."""
        now = self.ctx.clock.now()
        budget, window = self.ctx.command_budget, self.ctx.command_window_seconds
        member = self._members.setdefault((platform, user_id), _Member())
        while member.times and member.times[0] <= now - window:
            member.times.popleft()
        if len(member.times) < budget:
            member.times.append(now)
            member.warned = False
            if len(self._members) > _PRUNE_AT:
                self._prune(now - window)
            return Verdict.RUN, 0
        if member.warned:
            return Verdict.DROP, 0
        member.warned = True
        log.info("event=command.throttled platform=%s user=%s", platform, user_id)
        return Verdict.SLOW_DOWN, max(1, member.times[0] + window - now)

    def forbidden(self, platform: str, community: str, user_id: str, command: str) -> int:
        """Count a member's attempt at a staff command (the log, never the audit list)."""
        key = (platform, community, user_id)
        if key not in self._forbidden and len(self._forbidden) > _PRUNE_AT:
            self._forbidden.clear()  # counts for the log only: starting over is harmless
        self._forbidden[key] = attempts = self._forbidden.get(key, 0) + 1
        log.warning(
            "event=command.forbidden platform=%s community=%s user=%s command=%s attempts=%d",
            platform,
            community,
            user_id,
            command,
            attempts,
        )
        return attempts

    def _prune(self, before: int) -> None:
        quiet = [k for k, m in self._members.items() if not m.times or m.times[-1] <= before]
        for key in quiet:
            del self._members[key]


_GUARDS: WeakKeyDictionary[ReferralEngine, CommandGuard] = WeakKeyDictionary()


def guard_of(engine: ReferralEngine) -> CommandGuard:
    guard = _GUARDS.get(engine)
    if guard is None:
        guard = _GUARDS[engine] = CommandGuard(engine)
    return guard
