"""The `derflex` command as an operator meets it: help, results, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from server.cli import main

LFDI = "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5"


@pytest.fixture
def run(tmp_path: Path):  # noqa: ANN201
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True):  # noqa: ANN202
        result = runner.invoke(main, ["--home", str(tmp_path), *args], env={"DERFLEX_DATABASE_URL": ""})
        if ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code != 0, result.output
            # a handled error: click exits with a message, no exception escaped
            assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
        return result

    return invoke


def test_help_explains_every_command(run) -> None:  # noqa: ANN001
    out = run("--help").output
    for command in ("serve", "admin", "pki", "db"):
        assert command in out
    assert "--demo-devices" in run("serve", "--help").output
    assert "PIN" in run("admin", "register", "--help").output


def test_register_then_list(run) -> None:  # noqa: ANN001
    created = json.loads(run("admin", "register", LFDI.lower(), "--pin", "111115", "--label", "pump").output)
    assert created["lfdi"] == LFDI and created["sfdi"] == 167261211391
    listing = json.loads(run("admin", "devices", "--json").output)
    assert [d["lfdi"] for d in listing["devices"]] == [LFDI]
    assert "pump" in run("admin", "devices").output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("admin", "register", "not-hex"), "40 hexadecimal digits"),
        (("admin", "register", LFDI, "--pin", "111116"), "check digit"),
        (("admin", "post-rate", "42", "60"), "no device 42"),
        (("admin", "poll-rate", "dcap"), "give both"),
        (("admin", "poll-rate", "nothing", "60"), "unknown resource"),
    ],
)
def test_bad_input_is_one_clear_line(run, args, message: str) -> None:  # noqa: ANN001
    result = run(*args, ok=False)
    assert message in result.output


def test_duplicate_registration_is_refused(run) -> None:  # noqa: ANN001
    run("admin", "register", LFDI)
    assert "already registered" in run("admin", "register", LFDI, ok=False).output


def test_poll_rate_round_trip(run) -> None:  # noqa: ANN001
    out = run("admin", "poll-rate", "edev", "60").output
    assert "edev   60 s" in out and "dcap   900 s" in out


def test_admin_token_is_usable(run, tmp_path: Path) -> None:  # noqa: ANN001
    from server.db.session import Database
    from server.services import tokens

    token = run("admin", "token", "--name", "ops").output.strip()
    assert token.startswith("dfx_")
    db = Database(f"sqlite:///{(tmp_path / 'var' / 'derflex.db').resolve()}")
    with db.transaction() as s:
        assert tokens.check_token(s, token) and not tokens.check_token(s, token + "x")
    db.dispose()


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["--home", str(tmp_path), "--database-url", "postgresql://nobody@127.0.0.1:1/none", "admin", "devices"]
    )
    assert result.exit_code == 1 and "cannot open the database" in result.output


def test_unknown_time_zone_is_a_clear_error(run) -> None:  # noqa: ANN001
    assert "unknown time zone" in run("serve", "--timezone", "Mars/Olympus", ok=False).output


def test_db_upgrade_and_current(run) -> None:  # noqa: ANN001
    from server.db import migrate

    run("db", "upgrade")
    head = migrate.head_revision()
    assert f"current: {head}  head: {head}" in run("db", "current").output
