"""Fixtures that start `derflex serve` as a real process and talk to it over real TLS."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from server.pki import DevPKI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    proc: subprocess.Popen
    port: int
    home: Path
    log: Path
    beckn_port: int = 0

    @property
    def pki(self) -> DevPKI:
        return DevPKI(self.home / "certs")


def start_server(home: Path, *args: str, env: dict[str, str] | None = None) -> RunningServer:
    port = free_port()
    # every server its own BPP listener (unless the test fixes one), so servers never collide
    # ... and no dashboard listener unless the test asks for one (tests/ui start theirs on a free port)
    env = {"DERFLEX_BECKN_BIND": f"127.0.0.1:{free_port()}", "DERFLEX_UI_BIND": "off", **(env or {})}
    beckn_port = int(env["DERFLEX_BECKN_BIND"].rsplit(":", 1)[1]) if env["DERFLEX_BECKN_BIND"] else 0
    log = home / "server.log"
    cmd = [sys.executable, "-m", "server.cli", "--home", str(home), "serve", "--bind", f"127.0.0.1:{port}", *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=home
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return RunningServer(proc, port, home, log, beckn_port)
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"server did not listen within 30 s:\n{log.read_text()}")


def stop_server(server: RunningServer) -> int:
    server.proc.send_signal(signal.SIGTERM)
    try:
        return server.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        raise


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("serve"), "--demo-devices", "2")
    yield running
    assert stop_server(running) == 0, running.log.read_text()
