"""`derflex beckn …` and `derflex bap …` against a running `derflex serve`: what an operator types."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.bootstrap import prepare
from server.config import from_env
from server.services.sep2 import edev
from server.services.flex import programs as flex
from tests.e2e.conftest import free_port, start_server, stop_server
from tests.e2e.test_beckn_flow import PROGRAM, _wait_port, lfdi

pytestmark = pytest.mark.e2e


def derflex(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "server.cli", "--home", str(home), *args], capture_output=True,
                          text=True, timeout=120, env={**__import__("os").environ, **env}, cwd=home)


def test_keys_init_search_enroll_status_outbox(tmp_path: Path) -> None:
    beckn_port, bap_port = free_port(), free_port()
    env = {"DERFLEX_BECKN_BIND": f"127.0.0.1:{beckn_port}", "DERFLEX_SCHEDULER": "false"}
    settings = from_env(env, home=tmp_path)
    db = prepare(settings, say=lambda _m: None)
    with db.transaction() as s:
        edev.register_out_of_band(s, lfdi("cli-house"), int(time.time()))
        flex.create_program(s, PROGRAM, int(time.time()))
    db.dispose()

    keys = derflex(tmp_path, env, "beckn", "keys")
    assert keys.returncode == 0, keys.stderr
    entry = json.loads(keys.stdout)
    assert entry["subscriber_id"] == "bpp.derflex.local" and entry["type"] == "BPP"
    assert entry["url"] == f"http://127.0.0.1:{beckn_port}/beckn" and len(entry["signing_public_key"]) == 44

    missing = derflex(tmp_path, env, "bap", "search")
    assert missing.returncode == 1 and "derflex bap init" in missing.stderr  # a clear word, no traceback
    init = derflex(tmp_path, env, "bap", "init", "--listen", f"127.0.0.1:{bap_port}")
    assert init.returncode == 0 and "trusted" in init.stdout, init.stderr

    server = start_server(tmp_path, env=env)
    try:
        _wait_port(beckn_port)
        found = derflex(tmp_path, env, "bap", "search", "--kind", "battery")
        assert found.returncode == 0, found.stderr
        assert re.search(r"program-1 +Peak Saver: up to 0\.4 USD/kWh", found.stdout), found.stdout
        enrolled = derflex(tmp_path, env, "bap", "enroll", "program-1", "--customer", "Ada",
                           "--lfdi", lfdi("cli-house"), "--kind", "battery")
        assert enrolled.returncode == 0, enrolled.stderr
        m = re.match(r"order (\w+) ACTIVE \(transaction ([\w-]+)\): 1 device\(s\) enrolled", enrolled.stdout)
        assert m, enrolled.stdout
        status = derflex(tmp_path, env, "bap", "status", m[1], m[2])
        assert status.returncode == 0 and "ENROLLED" in status.stdout, status.stderr
        refused = derflex(tmp_path, env, "bap", "enroll", "program-1", "--customer", "Bob", "--lfdi", "00" * 20,
                          "--kind", "battery")
        assert refused.returncode == 1 and "30008" in refused.stderr and "Traceback" not in refused.stderr
        outbox = derflex(tmp_path, env, "beckn", "outbox")
        counts = dict(line.split() for line in outbox.stdout.splitlines())
        assert int(counts["delivered"]) >= 6 and counts["expired"] == "0", outbox.stdout
    finally:
        assert stop_server(server) == 0, server.log.read_text()
