import pytest

from bot.app import App, program_defaults
from config.settings import ConfigError, load


def test_defaults_load():
    settings = load(environ={})
    assert settings.database.url.startswith("sqlite+aiosqlite:///")
    assert program_defaults(settings).min_days == 3


def test_environment_overrides_the_file(tmp_path):
    file = tmp_path / "bot.toml"
    file.write_text("[jobs]\nsweep_seconds = 60\n[program]\nmin_days = 5\n")
    settings = load(
        file,
        environ={
            "REFERRAL_BOT_JOBS__SWEEP_SECONDS": "30",
            "REFERRAL_BOT_PROGRAM__MIN_MESSAGES": "7",
        },
    )
    assert settings.jobs.sweep_seconds == 30
    assert program_defaults(settings).min_days == 5
    assert program_defaults(settings).min_messages == 7  # a number, not the text "7"


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("[jobs]\nsweep_secs = 1\n", {}, "jobs.sweep_secs: unknown setting"),
        ("[jobs]\nsweep_seconds = 'often'\n", {}, "jobs.sweep_seconds: expected a whole number"),
        ("[nope]\na = 1\n", {}, "[nope]: unknown section"),
        ("", {"REFERRAL_BOT_DATABASE__URL": "mysql://x"}, "database.url: expected"),
        ("[program]\nmin_dayz = 1\n", {}, "program.min_dayz: unknown setting"),
        (
            "",
            {"REFERRAL_BOT_PROGRAM__MIN_DAYS": "soon"},
            "program.min_days: expected a whole number",
        ),
        ("[program]\ndigest_weekday = 7\n", {}, "program.digest_weekday: must be from 0 to 6"),
        ("[program]\ndm_newcomers = 'maybe'\n", {}, "program.dm_newcomers: must be one of"),
        ("[flood]\ncommand_budget = 0\n", {}, "flood.command_budget: expected a whole number"),
        (
            "",
            {"REFERRAL_BOT_FLOOD__INVITE_NEW_PER_DAY": "0"},
            "flood.invite_new_per_day: expected a whole number from 1",
        ),
    ],
)
def test_bad_settings_name_the_key(tmp_path, toml, env, message):
    file = tmp_path / "bot.toml"
    file.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        settings = load(file, environ=env)
        App(settings, [])


def test_a_missing_config_file_is_named():
    with pytest.raises(ConfigError, match="no such file"):
        load("/nonexistent/bot.toml", environ={})


def test_the_flood_budget_reaches_the_engine():
    settings = load(environ={"REFERRAL_BOT_FLOOD__COMMAND_BUDGET": "2"})
    app = App(settings, [])
    assert (app.ctx.command_budget, app.ctx.command_window_seconds) == (2, 10)
    assert app.ctx.invite_new_per_day == 3
