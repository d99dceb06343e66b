"""Settings that say what they do, on a real `derflex serve` (issue 17, item 6).

`DERFLEX_BECKN_BIND=` (empty) switches the Beckn facade off: no process of the server listens on
anything but the 2030.5 port (the listening sockets of the whole process tree are read from /proc).
The same method sees the BPP's listener when it is on, so the check can fail. An empty value for a
setting without a meaning of its own stops `serve` with a message naming the variable.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import RunningServer, free_port, start_server, stop_server

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads listening sockets from /proc")


def _tree(root: int) -> set[int]:
    """root and every descendant (by parent pid in /proc/<pid>/stat)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in tree} - tree
        tree |= more
        grew = bool(more)
    return tree


def _listening_ports(pids: set[int]) -> set[int]:
    """TCP ports in LISTEN state held by any of `pids`."""
    by_inode: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A":  # LISTEN
                by_inode[cols[9]] = int(cols[1].rsplit(":", 1)[1], 16)
    ports = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = target[len("socket:["):-1]
                if inode in by_inode:
                    ports.add(by_inode[inode])
    return ports


def _listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _stop(server: RunningServer) -> None:
    assert stop_server(server) == 0, server.log.read_text()


def test_an_empty_beckn_bind_switches_the_facade_off(tmp_path: Path) -> None:
    server = start_server(tmp_path, env={"DERFLEX_BECKN_BIND": ""})
    try:
        assert server.beckn_port == 0
        time.sleep(3)  # the BPP, were it on, is forked before the 2030.5 listener and binds at once
        assert server.proc.poll() is None, server.log.read_text()
        assert _listening_ports(_tree(server.proc.pid)) == {server.port}, server.log.read_text()
        assert "Beckn BPP listening" not in server.log.read_text()
    finally:
        _stop(server)


def test_with_a_bind_the_same_check_sees_the_bpp_listening(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        deadline = time.monotonic() + 30
        while not _listens(server.beckn_port):
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.1)
        assert _listening_ports(_tree(server.proc.pid)) == {server.port, server.beckn_port}
    finally:
        _stop(server)


@pytest.mark.parametrize("variable", ["DERFLEX_POLL_RATE", "DERFLEX_SCHEDULER", "DERFLEX_TLS_CERT_FILE",
                                      "DERFLEX_BECKN_SUBSCRIBER_ID"])
def test_an_empty_value_without_a_meaning_stops_serve_naming_it(tmp_path: Path, variable: str) -> None:
    env = {**os.environ, variable: "", "DERFLEX_BECKN_BIND": f"127.0.0.1:{free_port()}"}
    done = subprocess.run([sys.executable, "-m", "server.cli", "--home", str(tmp_path), "serve", "--bind",
                           f"127.0.0.1:{free_port()}"], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert f"{variable} is set but empty" in done.stderr, done.stderr[-2000:]
