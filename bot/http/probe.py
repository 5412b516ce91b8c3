"""``python -m bot.http.probe``: exit 0 if /healthz answers (the container's HEALTHCHECK).

It reads the same settings as the bot (defaults, ``REFERRAL_BOT_CONFIG`` if set, environment
variables). With ``[http] listen`` empty there is no listener to ask, and it exits 0: the
container's health is then the process running at all.
"""

from __future__ import annotations

import os
import sys
import urllib.request

from config.settings import ConfigError, listen_address, load


def main() -> int:
    try:
        address = listen_address(load(os.environ.get("REFERRAL_BOT_CONFIG") or None).http)
    except ConfigError as exc:
        print(f"probe: configuration error: {exc}", file=sys.stderr)
        return 1
    if address is None:
        return 0
    host, port = address
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=4) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"probe: /healthz on {host}:{port} did not answer: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
