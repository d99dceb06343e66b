"""First-run preparation: idempotent, and private where it holds secrets."""

from __future__ import annotations

import stat
from pathlib import Path

from server.bootstrap import ensure_demo_devices, prepare
from server.config import Settings
from server.db import repo


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_run_makes_private_files_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    said: list[str] = []
    db = prepare(settings, say=said.append)
    assert any("admin API token" in m for m in said) and any("dev PKI" in m for m in said)
    token_file = settings.admin_token_path
    assert mode(token_file) == 0o600 and mode(token_file.parent) == 0o700
    assert mode(tmp_path / "var" / "derflex.db") == 0o600
    assert mode(settings.certs_dir / "server.key") == 0o600
    first_token = token_file.read_text()
    db.dispose()
    said.clear()
    db = prepare(settings, say=said.append)
    assert said == [] and token_file.read_text() == first_token
    creds = ensure_demo_devices(settings, db, 2)
    again = ensure_demo_devices(settings, db, 2)
    assert [c.lfdi for c in creds] == [c.lfdi for c in again]
    with db.transaction() as s:
        assert sorted(d.label for d in repo.list_devices(s, _operator(), 0, 10)) == ["demo-1", "demo-2"]
        assert {d.pin for d in repo.list_devices(s, _operator(), 0, 10)} == {111115}
    db.dispose()


def test_token_file_that_existed_with_a_wide_mode_is_narrowed(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    settings.admin_token_path.parent.mkdir(parents=True)
    settings.admin_token_path.write_text("old")
    settings.admin_token_path.chmod(0o644)
    prepare(settings, say=lambda m: None).dispose()
    assert mode(settings.admin_token_path) == 0o600
    assert settings.admin_token_path.read_text().startswith("dfx_")


def _operator():  # noqa: ANN202
    from server.scope import Scope

    return Scope.operator()
