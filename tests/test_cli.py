"""The referral-bot command: simulate's exit codes, backup, migrate."""

import sqlite3
from pathlib import Path

from bot.cli import main


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.scenario"
    path.write_text(text)
    return path


def test_simulate_passes_and_fails_on_expectations(tmp_path, capsys):
    ok = write(tmp_path, "community lounge\njoin alice\nexpect Welcome to lounge, @alice!\n")
    assert main(["simulate", str(ok)]) == 0
    assert "[bot -> #lounge] Welcome to lounge, @alice!" in capsys.readouterr().out
    bad = write(tmp_path, "community lounge\njoin alice\nexpect Goodbye\n")
    assert main(["simulate", str(bad)]) == 1
    assert "expected 'Goodbye'" in capsys.readouterr().err


def test_simulate_reports_script_errors_with_the_line(tmp_path, capsys):
    bad = write(tmp_path, "community lounge\nadvance soon\n")
    assert main(["simulate", str(bad)]) == 2
    assert "line 2: advance takes a duration" in capsys.readouterr().err


def test_migrate_then_backup_makes_a_consistent_copy(tmp_path, monkeypatch, capsys):
    db = tmp_path / "live.db"
    monkeypatch.setenv("REFERRAL_BOT_DATABASE__URL", f"sqlite+aiosqlite:///{db}")
    assert main(["migrate"]) == 0
    out = tmp_path / "copy.db"
    assert main(["backup", str(out)]) == 0
    tables = {r[0] for r in sqlite3.connect(out).execute("select name from sqlite_master")}
    assert {"referrals", "grants", "outbox", "alembic_version"} <= tables
    capsys.readouterr()
    assert main(["backup", str(out)]) == 2
    assert "exists; choose a new file name" in capsys.readouterr().err


def test_a_bad_config_is_named_and_nothing_runs(tmp_path, capsys):
    cfg = tmp_path / "bot.toml"
    cfg.write_text("[jobs]\nsweep = 1\n")
    assert main(["run", "--config", str(cfg)]) == 2
    assert "jobs.sweep: unknown setting" in capsys.readouterr().err


def test_the_console_lists_its_statements_and_says_how_to_become_admin(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("REFERRAL_BOT_DATABASE__URL", f"sqlite+aiosqlite:///{tmp_path}/c.db")
    typed = iter(["help", "?", "role alice admin", "alice: /program", "quit"])
    monkeypatch.setattr("builtins.input", lambda _prompt="": next(typed))
    assert main(["console"]) == 0
    out = capsys.readouterr().out
    assert "role <you> admin" in out  # said before anything is typed
    assert out.count("Statements (the scenario language") == 2  # help and ?
    for statement in ("community <name>", "join <user>", "advance <N>(m|h|d)", "quit, exit"):
        assert statement in out
    assert "cannot read" not in out  # help is not a scenario line
    assert "[bot -> @alice (private)] Program" in out  # the admin hint works as written


def test_a_sqlite_file_in_a_folder_not_made_yet_is_created_without_waiting(
    tmp_path, monkeypatch, caplog
):
    db = tmp_path / "new" / "data" / "bot.db"
    monkeypatch.setenv("REFERRAL_BOT_DATABASE__URL", f"sqlite+aiosqlite:///{db}")
    assert main(["migrate"]) == 0
    assert db.is_file()
    assert not [r for r in caplog.records if "database.retry" in r.getMessage()]
