"""The ``referral-bot`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

from bot import redaction
from bot.app import App, program_defaults
from bot.engine.clock import SystemClock
from bot.engine.errors import UserError
from bot.engine.text import t
from bot.logformat import setup_logging
from bot.platforms.console import ConsolePlatform
from bot.platforms.registry import build_platforms
from bot.scenario import ScenarioError, ScenarioRunner, _options
from bot.supervise import DatabaseUnreachable, PlatformRejected, wait_for_database
from config import settings as config
from config.i18n import Catalog
from storage.backup import RunLock, backup_sqlite, restore_sqlite
from storage.database import Database, StorageError, redact

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.scenario"
log = logging.getLogger("referral-bot")
_redaction: list[redaction.RedactSecrets] = []  # the filter main() installed


def _redacted(text: str) -> str:
    return _redaction[-1].redact(text) if _redaction else text


def _settings(args: argparse.Namespace) -> config.Settings:
    settings = config.load(getattr(args, "config", None))
    program_defaults(settings)  # the [program] defaults are checked at start too
    return settings


def _with_database(settings: config.Settings, url: str) -> config.Settings:
    return replace(settings, database=replace(settings.database, url=url))


def _temp_database() -> str:
    folder = Path(tempfile.mkdtemp(prefix="referral-bot-"))
    return f"sqlite+aiosqlite:///{folder / 'scenario.db'}"


async def _simulate(settings: config.Settings, path: Path) -> int:
    runner = ScenarioRunner(settings, echo=print)
    try:
        result = await runner.run_file(path)
    except ScenarioError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 2
    if result.failures:
        print(f"\n{len(result.failures)} expectation(s) failed:", file=sys.stderr)
        for failure in result.failures:
            print(f"  {path}: {failure}", file=sys.stderr)
        return 1
    print(f"\n{path.name}: every expectation met.")
    return 0


async def _console(settings: config.Settings) -> int:
    runner = ScenarioRunner(settings, echo=print)
    runner.clock.set(SystemClock().now())
    await runner.app.open()
    catalog = runner.app.catalog
    print(catalog.render(t("ops.console.welcome")))
    print(catalog.render(t("ops.console.admin_hint")))
    try:
        for name in settings.console.communities:
            if name not in runner.console.communities:
                await runner.step(0, f"community {name}")
        line_no = 0
        while True:
            try:
                line = await asyncio.to_thread(input, "> ")
            except EOFError:
                break
            line_no += 1
            if line.strip() in ("quit", "exit"):
                break
            if line.strip() in ("help", "?"):
                print(catalog.render(t("ops.console.help")))
                continue
            try:
                await runner.step(line_no, line)
            except ScenarioError as exc:
                print(f"  {exc}")
    finally:
        await runner.app.close()
    return 0


class ShiftableClock:
    """The system clock plus an offset that console input may move (``clock_controls``)."""

    def __init__(self) -> None:
        self.offset = 0

    def now(self) -> int:
        return SystemClock().now() + self.offset


def _stdin_lines(loop: asyncio.AbstractEventLoop) -> asyncio.Queue[str | None]:
    """Lines of stdin, read by a daemon thread: a blocked read never delays a stop, and the
    process exits without waiting for Enter. None marks the end of the input."""
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def pump() -> None:
        try:
            for line in sys.stdin:
                loop.call_soon_threadsafe(queue.put_nowait, line)
        except (OSError, ValueError):
            pass
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=pump, name="console-stdin", daemon=True).start()
    return queue


_PERSON_SAYS = re.compile(r"^([\w.\-]+)(?:@([\w.\-]+))?:\s?(.*)$")
_DURATION = re.compile(r"^(\d+)([mhd])$")


async def _console_line(
    console: ConsolePlatform, clock: ShiftableClock | None, line: str
) -> str | None:
    """One line typed (or piped) into `run`'s console; returns a message when it can't be read.

    ``<user>[@<community>]: <text>``, ``join``/``leave``/``role`` as in scenarios, and, with
    ``console.clock_controls``, ``advance <N>(m|h|d)``.
    """
    word, _, rest = line.strip().partition(" ")
    words = rest.split()
    if not word:
        return None
    try:
        if word == "join" and words:
            opts = _options(words[1:], {"via", "code", "in"}, 0)
            await console.join(words[0], opts.get("in"), opts.get("via"), opts.get("code"))
        elif word == "leave" and words:
            await console.leave(words[0], _options(words[1:], {"in"}, 0).get("in"))
        elif word == "role" and len(words) >= 2:
            await console.set_role(words[0], words[1], _options(words[2:], {"in"}, 0).get("in"))
        elif word == "advance" and clock is not None and len(words) == 1:
            match = _DURATION.match(words[0])
            if not match:
                return "advance takes a duration like 30m, 12h or 3d"
            clock.offset += int(match.group(1)) * {"m": 60, "h": 3600, "d": 86400}[match[2]]
        elif (said := _PERSON_SAYS.match(line.strip())) is not None:
            user, community, text = said.groups()
            await console.say(user, text, community)
        else:
            return "type as a member, e.g.  alice: /invite  (or join/leave/role as in scenarios)"
    except ScenarioError as exc:
        return str(exc).removeprefix("line 0: ")
    except UserError as exc:
        return console.render(exc.text)
    return None


async def _run(settings: config.Settings) -> int:
    try:
        platforms = build_platforms(settings)
    except config.ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if not platforms:
        print(
            "No platform is enabled: set console.enabled, discord.enabled or telegram.enabled.",
            file=sys.stderr,
        )
        return 2
    try:
        await wait_for_database(settings.database.url, settings.database.start_retry_seconds)
    except DatabaseUnreachable as exc:
        print(_database_line(exc), file=sys.stderr)
        return 1
    lock = RunLock.for_url(settings.database.url)
    if lock is not None:  # a quick look: the database itself holds the lock while it is open
        if not lock.acquire():
            print(
                f"run: another referral-bot process is using {lock.database}: a SQLite database "
                "serves one process; stop the other one, or use PostgreSQL (database.url) to run "
                f"several processes ({lock.held_message()})",
                file=sys.stderr,
            )
            return 2
        lock.release()
    clock = ShiftableClock()
    app = App(settings, platforms, clock=clock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    app.supervisor.on_fatal.append(lambda _exc: stop.set())  # a token rejected on a retry
    try:
        await app.start()
    except StorageError as exc:
        print(f"database error: {exc}", file=sys.stderr)
        await app.close()
        return 2
    except PlatformRejected as exc:
        await app.close()
        print(str(exc), file=sys.stderr)
        return 2
    except config.ConfigError as exc:
        await app.close()
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # e.g. a platform that fails at start: said once, redacted
        log.error("event=app.start_failed error=%s", type(exc).__name__, exc_info=True)
        await app.close()
        print(f"referral-bot could not start: {_redacted(str(exc))}", file=sys.stderr)
        return 1
    try:
        console = next((p for p in platforms if isinstance(p, ConsolePlatform)), None)
        if console is not None:
            for name in settings.console.communities:
                if name not in console.communities:
                    await console.add_community(name)
        print(
            f"referral-bot running on {', '.join(app.platforms)} with "
            f"{redact(settings.database.url)}; Ctrl-C stops it.",
            flush=True,
        )
        if console is not None and sys.stdin is not None:
            await _read_console(console, settings, clock, stop, loop)
        await stop.wait()
    finally:
        await app.close()
    if app.supervisor.fatal is not None:
        print(str(app.supervisor.fatal), file=sys.stderr)
        return 2
    return 0



def _database_line(exc: DatabaseUnreachable) -> str:
    return Catalog().render(
        t("ops.database.unreachable", url=exc.url, seconds=f"{exc.seconds:g}", reason=exc.reason)
    )


async def _read_console(
    console: ConsolePlatform,
    settings: config.Settings,
    clock: ShiftableClock,
    stop: asyncio.Event,
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Console input until a signal (at once, even mid-line) or the end of the input."""
    interactive = sys.stdin.isatty()
    if interactive:
        print("Type as a member, e.g.  alice: /invite")
    lines = _stdin_lines(loop)
    stopping = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            if interactive:
                print("> ", end="", flush=True)
            reading = asyncio.create_task(lines.get())
            await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not reading.done():
                reading.cancel()
                return
            line = reading.result()
            if line is None:
                return  # end of input: keep serving until a signal
            problem = await _console_line(
                console, clock if settings.console.clock_controls else None, line
            )
            if problem:
                print(f"  {problem}", flush=True)
    finally:
        stopping.cancel()


async def _migrate(settings: config.Settings) -> int:
    try:
        await wait_for_database(settings.database.url, settings.database.start_retry_seconds)
    except DatabaseUnreachable as exc:
        print(_database_line(exc), file=sys.stderr)
        return 1
    db = Database(settings.database.url)
    await db.migrate()
    await db.close()
    print(f"database at {redact(settings.database.url)} is up to date")
    return 0


def _restore(settings: config.Settings, source: Path) -> int:
    db = Database(settings.database.url)
    if db.path is None:
        print(
            "restore: only SQLite databases are restored this way; for PostgreSQL use "
            "pg_restore (see docs/operations.md#backup-and-restore)",
            file=sys.stderr,
        )
        return 2
    lock = RunLock.for_url(settings.database.url)
    assert lock is not None
    if not lock.acquire():
        print(f"restore: {lock.held_message()}; stop it first", file=sys.stderr)
        return 2
    try:
        kept = restore_sqlite(source, db.path)
    except (FileNotFoundError, ValueError) as exc:
        print(f"restore: {exc}", file=sys.stderr)
        return 2
    finally:
        lock.release()
    print(
        f"restored {db.path} from {source}" + (f"; the previous one is in {kept}" if kept else "")
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="referral-bot", description="A referral bot for chat communities."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the configured platforms")
    run.add_argument("--config", help="TOML settings file (see docs/configuration.md)")
    con = sub.add_parser("console", help="an interactive terminal community")
    con.add_argument("--config")
    sim = sub.add_parser("simulate", help="run a scenario script and print the transcript")
    sim.add_argument("file", type=Path)
    sim.add_argument("--config")
    sim.add_argument("--database", help="database URL (default: a fresh temporary SQLite file)")
    sub.add_parser("demo", help="play the bundled demo scenario")
    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.add_argument("--config")
    bak = sub.add_parser("backup", help="copy a live SQLite database consistently")
    bak.add_argument("out", type=Path)
    bak.add_argument("--config")
    res = sub.add_parser("restore", help="replace the SQLite database with a backup (bot stopped)")
    res.add_argument("file", type=Path)
    res.add_argument("--config")
    args = parser.parse_args(argv)

    try:
        settings = _settings(args)
    except config.ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(
        os.environ.get("REFERRAL_BOT_LOG_LEVEL", settings.logging.level)
        if args.command in ("run", "migrate")
        else "WARNING",
        settings.logging.format,
        third_party_level=settings.logging.third_party_level,
        keep_foreign=True,
    )
    _redaction.append(redaction.install(redaction.secrets_of(settings)))
    if args.command == "demo":
        data = Path("data")
        data.mkdir(exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            (data / f"demo.db{suffix}").unlink(missing_ok=True)
        settings = _with_database(settings, f"sqlite+aiosqlite:///{data / 'demo.db'}")
        return asyncio.run(_simulate(settings, DEMO))
    if args.command == "simulate":
        if not args.file.is_file():
            print(f"simulate: no such scenario file {str(args.file)!r}", file=sys.stderr)
            return 2
        settings = _with_database(settings, args.database or _temp_database())
        return asyncio.run(_simulate(settings, args.file))
    if args.command == "console":
        try:
            return asyncio.run(_console(settings))
        except StorageError as exc:
            print(f"database error: {exc}", file=sys.stderr)
            return 2
    if args.command == "migrate":
        return asyncio.run(_migrate(settings))
    if args.command == "backup":
        db = Database(settings.database.url)
        if db.path is None:
            print(
                "backup: only SQLite databases are copied this way; use pg_dump for PostgreSQL",
                file=sys.stderr,
            )
            return 2
        try:
            pages = backup_sqlite(db.path, args.out)
        except (FileExistsError, FileNotFoundError) as exc:
            print(f"backup: {exc}", file=sys.stderr)
            return 2
        print(f"copied {pages} pages of {db.path} to {args.out}")
        return 0
    if args.command == "restore":
        return _restore(settings, args.file)
    return asyncio.run(_run(settings))
