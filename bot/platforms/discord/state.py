"""A small JSON file the adapter keeps next to the data directory.

It holds what the engine has no read for yet: invite code -> referral code for the personal
invites the bot made, the hash of the last synced command tree, and the guilds whose admins were
already told that attribution falls back to typed codes. Writes are atomic (temp file + rename)
and merge with what is on disk, so two shard processes sharing the directory do not erase each
other's entries.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def state_dir_for(database_url: str) -> Path:
    """The directory of a SQLite file, or ./data for a server database."""
    if database_url.startswith("sqlite") and ":///" in database_url:
        path = database_url.split(":///", 1)[1]
        if path and path != ":memory:":
            return Path(path).expanduser().resolve().parent
    return Path("data").resolve()


class AdapterState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = self._read()

    def _read(self) -> dict[str, Any]:
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
            return loaded if isinstance(loaded, dict) else {}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("event=discord.state_unreadable path=%s error=%s", self.path, exc)
            return {}

    def _write(self) -> None:
        on_disk = self._read()
        for key, value in self.data.items():
            if isinstance(value, dict) and isinstance(on_disk.get(key), dict):
                merged = dict(on_disk[key])
                for sub, inner in value.items():
                    if isinstance(inner, dict) and isinstance(merged.get(sub), dict):
                        merged[sub] = {**merged[sub], **inner}
                    else:
                        merged[sub] = inner
                on_disk[key] = merged
            else:
                on_disk[key] = value
        self.data = on_disk
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".discord-state-")
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(on_disk, out, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("event=discord.state_unwritable path=%s error=%s", self.path, exc)

    # -- personal invites -------------------------------------------------------------------

    def invite_codes(self, guild_id: str) -> dict[str, str]:
        return dict(self.data.get("invites", {}).get(guild_id, {}))

    def remember_invite(self, guild_id: str, invite_code: str, referral_code: str) -> None:
        self.data.setdefault("invites", {}).setdefault(guild_id, {})[invite_code] = referral_code
        self._write()

    # -- command sync -----------------------------------------------------------------------

    def command_hash(self, scope: str) -> str | None:
        value = self.data.get("commands", {}).get(scope)
        return value if isinstance(value, str) else None

    def save_command_hash(self, scope: str, digest: str) -> None:
        self.data.setdefault("commands", {})[scope] = digest
        self._write()

    # -- one-time admin notices -------------------------------------------------------------

    def notified(self, guild_id: str, what: str) -> bool:
        return bool(self.data.get("notices", {}).get(guild_id, {}).get(what))

    def mark_notified(self, guild_id: str, what: str) -> None:
        self.data.setdefault("notices", {}).setdefault(guild_id, {})[what] = True
        self._write()

    def forget_notice(self, guild_id: str, what: str) -> None:
        """The problem was fixed: tell again if it comes back."""
        notices = self.data.get("notices", {}).get(guild_id, {})
        if notices.get(what):
            notices[what] = False
            self._write()
