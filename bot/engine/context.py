"""What every engine operation needs: the clock, the defaults, platform capabilities, caches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.engine.program_settings import ProgramSettings

if TYPE_CHECKING:
    from bot.engine.clock import Clock
    from bot.engine.models import Community


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a platform can do; admin settings are validated against it."""

    roles: bool = True
    buttons: bool = False
    dms: bool = True
    dms_intrusive: bool = False
    account_age: bool = False
    channel_access: bool = False
    tags: bool = False  # member tags (Telegram setChatMemberTag), the counterpart of roles


@dataclass(slots=True)
class EngineContext:
    clock: Clock
    defaults: ProgramSettings = field(default_factory=ProgramSettings)
    capabilities: dict[str, Capabilities] = field(default_factory=dict)
    recheck_seconds: int = 3600  # a pending referral not yet eligible is looked at again this often
    sweep_batch: int = 500
    code_attempt_limit: int = 5  # invalid codes allowed per window...
    code_attempt_window: int = 600  # ...of this many seconds...
    code_lock_seconds: int = 1800  # ...before code entry locks for this long
    link_token_seconds: int = 3600
    # Members can't flood the bot: commands per window (admins and moderators exempt)...
    command_budget: int = 5
    command_window_seconds: int = 10
    invite_new_per_day: int = 3  # ...and new codes (`/invite new`) per 24 hours
    # Caches filled only after a commit: community identity never changes except by link-program.
    communities: dict[tuple[str, str], Community] = field(default_factory=dict)

    def caps(self, platform: str) -> Capabilities:
        return self.capabilities.get(platform, Capabilities())
