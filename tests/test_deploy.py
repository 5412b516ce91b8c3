"""The deployment files: every path, command and setting they name exists.

No image is built here (there is no container registry to pull a base image from), so the
Dockerfile and compose.yaml are read and checked against the project: files copied, the entry
point and its subcommand, the health probe, the settings passed as environment variables. The
systemd unit is checked by ``systemd-analyze verify`` where it is installed.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

from bot.cli import main
from config.settings import load

ROOT = Path(__file__).resolve().parent.parent


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def exec_form(args: str) -> list[str]:
    return yaml.safe_load(args)  # a JSON array is YAML too


def test_the_dockerfile_copies_what_exists_and_runs_the_real_command():
    steps = dockerfile()
    froms = [a for i, a in steps if i == "FROM"]
    assert all(a.startswith("python:3.11-slim") for a in froms)
    for instruction, args in steps:
        if instruction == "COPY" and not args.startswith("--from"):
            *sources, _target = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such file in the project"
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    copied = {a.split()[0] for i, a in steps if i == "COPY" and not a.startswith("--from")}
    for pattern in packages["packages"]["find"]["include"]:
        assert pattern.rstrip("*") in copied, f"package {pattern} is not copied into the image"
    [entrypoint] = [exec_form(a) for i, a in steps if i == "ENTRYPOINT"]
    [cmd] = [exec_form(a) for i, a in steps if i == "CMD"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["referral-bot"] and entrypoint[0] in scripts
    assert cmd == ["run"]
    with pytest.raises(SystemExit) as shown:
        main([*cmd, "--help"])
    assert shown.value.code == 0  # a subcommand the CLI knows
    users = [a for i, a in steps if i == "USER"]
    assert users and users[-1] not in ("root", "0")
    [workdir] = [a for i, a in steps if i == "WORKDIR"][-1:]
    [volume] = [exec_form(a) for i, a in steps if i == "VOLUME"]
    default_db = make_url(load(environ={}).database.url).database
    assert volume == [f"{workdir}/{Path(default_db).parent}"]  # the default data/ folder


def test_the_healthcheck_probe_and_the_image_settings_are_real(tmp_path):
    steps = dockerfile()
    [health] = [a for i, a in steps if i == "HEALTHCHECK"]
    probe = exec_form(health.split("CMD", 1)[1].strip())
    assert probe[:2] == ["python", "-m"]
    assert (ROOT / (probe[2].replace(".", "/") + ".py")).is_file()
    env = {}
    for instruction, args in steps:
        if instruction == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
    settings = load(environ={k: v for k, v in env.items() if k.startswith("REFERRAL_BOT_")})
    assert settings.http.listen == "0.0.0.0:8080" and not settings.console.enabled
    exposed = [a for i, a in steps if i == "EXPOSE"]
    assert exposed == [settings.http.listen.rsplit(":", 1)[1]]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "data" in ignored


def test_compose_runs_the_bot_after_a_healthy_postgresql_16():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    db, bot = compose["services"]["db"], compose["services"]["bot"]
    assert db["image"] == "postgres:16"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert bot["depends_on"]["db"]["condition"] == "service_healthy"
    named = set(compose["volumes"])
    for service in (db, bot):
        for mount in service["volumes"]:
            assert mount.split(":")[0] in named  # named volumes, not host folders
    env = {k: str(v).replace("${POSTGRES_PASSWORD}", "pw") for k, v in bot["environment"].items()}
    env = {k: v.split(":-")[-1].rstrip("}") if v.startswith("${") else v for k, v in env.items()}
    settings = load(environ=env)  # every REFERRAL_BOT_* name is a real setting
    url = make_url(settings.database.url)
    assert url.host == "db" and url.database == db["environment"]["POSTGRES_DB"]
    assert url.username == db["environment"]["POSTGRES_USER"]
    assert settings.database.url.startswith("postgresql+asyncpg://")
    assert {"DISCORD_TOKEN", "TELEGRAM_TOKEN"} <= set(env)  # the default token_env names
    assert settings.discord.token_env in env and settings.telegram.token_env in env
    assert bot["build"] == "."


def unit() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for raw in (ROOT / "examples" / "referral-bot.service").read_text().splitlines():
        line = raw.strip()
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def test_the_systemd_unit_restarts_on_failure_and_reads_the_token_from_a_credential():
    u = unit()
    assert u["Restart"] == ["on-failure"]
    assert u["RestartPreventExitStatus"] == ["2"]  # a rejected token is not retried forever
    program, command, *rest = shlex.split(u["ExecStart"][0])
    assert program.endswith("/referral-bot") and command == "run" and "--config" in rest
    credentials = {c.split(":", 1)[0] for c in u["LoadCredential"]}
    env = dict(e.split("=", 1) for e in u["Environment"])
    settings = load(environ=env)
    token_file = settings.discord.token_file
    assert token_file.startswith("%d/") and token_file[3:] in credentials


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_finds_nothing_wrong_with_the_unit(tmp_path):
    text = (ROOT / "examples" / "referral-bot.service").read_text()
    # verify checks that ExecStart exists: point it at this checkout's installed command
    here = shutil.which("referral-bot") or str(Path(__file__).parents[1] / ".venv/bin/referral-bot")
    text = text.replace("/opt/referral-bot/.venv/bin/referral-bot", here)
    text = text.replace("User=referral-bot", "User=root")
    copy = tmp_path / "referral-bot.service"
    copy.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    complaints = [line for line in result.stderr.splitlines() if str(copy) in line]
    assert result.returncode == 0 and complaints == []
