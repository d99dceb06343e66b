"""`derflex demo` refuses what it must not do before it starts anything (the whole run is
tests/e2e/test_demo.py)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from server.cli import main


def test_the_demo_never_empties_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    result = CliRunner().invoke(main, ["demo", "--home", str(tmp_path), "--devices", "1"])
    assert result.exit_code == 1
    assert "is not a demo home" in result.output and "Traceback" not in result.output
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_help_says_what_it_does() -> None:
    out = CliRunner().invoke(main, ["demo", "--help"]).output
    assert "end to end" in out and "--devices" in out and "--window-minutes" in out
