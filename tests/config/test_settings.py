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
        (
            "[discord]\nguild_ids = [1.5]\n",
            {},
            "discord.guild_ids: expected a list of ids or names, e.g. [123, 456]",
        ),
        (
            "[telegram]\nmoderators_chat_id = 1.5\n",
            {},
            "telegram.moderators_chat_id: expected text or a whole number",
        ),
        ("[logging]\nformat = 'xml'\n", {}, "logging.format: expected text or json"),
        ("[http]\nlisten = '8080'\n", {}, "http.listen: expected host:port"),
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


def test_numeric_ids_are_accepted_as_numbers(tmp_path):
    file = tmp_path / "bot.toml"
    file.write_text(
        "[discord]\nguild_ids = [123, 456]\nshard_ids = [0]\nshard_count = 2\n"
        "[telegram]\nmoderators_chat_id = -100123\n"
    )
    settings = load(file, environ={})
    assert settings.discord.guild_ids == ("123", "456")  # the same as ["123", "456"]
    assert settings.discord.shard_ids == ("0",)
    assert settings.telegram.moderators_chat_id == "-100123"
    text = tmp_path / "text.toml"
    text.write_text('[discord]\nguild_ids = ["123"]\n[telegram]\nmoderators_chat_id = "-100123"\n')
    same = load(text, environ={})
    assert same.discord.guild_ids == ("123",) and same.telegram.moderators_chat_id == "-100123"


def test_the_flood_budget_reaches_the_engine():
    settings = load(environ={"REFERRAL_BOT_FLOOD__COMMAND_BUDGET": "2"})
    app = App(settings, [])
    assert (app.ctx.command_budget, app.ctx.command_window_seconds) == (2, 10)
    assert app.ctx.invite_new_per_day == 3
