"""Several hosts on one machine for tests/e2e/test_multihost.py: network namespaces joined by a
bridge, Debian's haproxy in front, and what the test needs to look at and to break them.

The shape (as root; `ip netns` and veth from iproute2):

    root namespace                                   namespace dfxmh<pid>-h<i> (one per host)
    ─────────────────────────────────────────        ─────────────────────────────────────────
    devices → 127.0.0.1:<port> haproxy (TCP) ──┐     eth0 10.213.N.1<i>/24, default via .1
                                                │     derflex serve --bind 10.213.N.1<i>:8443
    bridge dmh<tag>br 10.213.N.1/24 ←── veth ───┴──→  (its own PostgreSQL pool, scheduler candidate)
    haproxy 10.213.N.1:5432 → 127.0.0.1:5432 (PostgreSQL listens on loopback only: test-only relay)

The hosts reach the root namespace's bridge address through their default route, nothing else:
no forwarding, no NAT, so nothing of the machine's own network changes. PostgreSQL (trust, on
127.0.0.1 only) is reached through a `listen` section of the same haproxy — a TCP relay that closes
the database side the moment a host's side goes, so a killed host's sessions (and the scheduler's
advisory lock) end at once, as they would on a real network when its kernel is gone.

Names carry the test process's pid, so parallel runs never collide and `sweep_stale` can remove
what a run that died left behind (only namespaces whose owner pid is gone).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "dfxmh"  # namespaces: dfxmh<pid>-h<i>
DEVICE_PORT = 8443  # each host's 2030.5 listener, inside its namespace


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def usable() -> str | None:
    """Why this machine cannot run the hosts (None when it can): root, iproute2, veth, bridges."""
    if os.geteuid() != 0:
        return "needs root for ip netns / veth"
    try:
        _ip("netns", "list")
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"ip netns unavailable: {exc}"
    return None


def sweep_stale() -> None:
    """Remove namespaces (and their bridge) left by earlier runs whose process is gone."""
    listed = _ip("netns", "list", check=False).stdout
    for name in re.findall(rf"^({PREFIX}(\d+)-h\d+)", listed, flags=re.M):
        ns, pid = name[0], int(name[1])
        if not Path(f"/proc/{pid}").exists():
            kill_namespace(ns)
            _ip("netns", "del", ns, check=False)
            _ip("link", "del", _bridge_name(pid), check=False)


def _bridge_name(pid: int) -> str:
    return f"dmh{pid % 100000}br"  # interface names: 15 characters at most


@dataclass
class Network:
    """A bridge in the root namespace and `hosts` namespaces on it (`up()` / `down()`)."""

    hosts: int
    pid: int = field(default_factory=os.getpid)
    subnet: str = ""  # "10.213.N"; chosen by up()
    namespaces: list[str] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return _bridge_name(self.pid)

    @property
    def gateway(self) -> str:
        """The root namespace's address on the bridge: what the hosts reach (PostgreSQL, receivers)."""
        return f"{self.subnet}.1"

    def address(self, i: int) -> str:
        """Host i's address (i from 1)."""
        return f"{self.subnet}.{10 + i}"

    def namespace(self, i: int) -> str:
        return f"{PREFIX}{self.pid}-h{i}"

    def _free_subnet(self) -> str:
        taken = _ip("-4", "addr", check=False).stdout
        for k in range(250):
            candidate = f"10.213.{(self.pid + k) % 250 + 1}"
            if f" {candidate}." not in taken:
                return candidate
        raise RuntimeError("no free 10.213.x.0/24 subnet for the test hosts")

    def up(self) -> Network:
        self.subnet = self._free_subnet()
        tag = self.pid % 100000
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i in range(1, self.hosts + 1):
            ns, outside, inside = self.namespace(i), f"dmh{tag}h{i}", f"dmh{tag}p{i}"
            _ip("netns", "add", ns)
            self.namespaces.append(ns)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", ns)
            _ip("link", "set", outside, "master", self.bridge)
            _ip("link", "set", outside, "up")
            for cmd in (("link", "set", "lo", "up"), ("link", "set", inside, "name", "eth0"),
                        ("addr", "add", f"{self.address(i)}/24", "dev", "eth0"), ("link", "set", "eth0", "up"),
                        ("route", "add", "default", "via", self.gateway)):
                _ip("-n", ns, *cmd)
        return self

    def down(self) -> None:
        """Kill whatever still runs in the namespaces, then remove them and the bridge. Never raises."""
        tag = self.pid % 100000
        for i, ns in enumerate(self.namespaces, start=1):
            kill_namespace(ns)
            _ip("netns", "del", ns, check=False)  # takes its veth with it, lazily: the peer too, now
            _ip("link", "del", f"dmh{tag}h{i}", check=False)
        self.namespaces = []
        _ip("link", "del", self.bridge, check=False)

    def exec_prefix(self, i: int) -> list[str]:
        """The command prefix that runs a program inside host i's namespace."""
        return ["ip", "netns", "exec", self.namespace(i)]


def pids_in(ns: str) -> list[int]:
    out = _ip("netns", "pids", ns, check=False).stdout
    return [int(p) for p in out.split()]


def kill_namespace(ns: str) -> list[int]:
    """kill -9 of every process in namespace `ns` (a host's sudden death); returns their pids."""
    killed = []
    for pid in pids_in(ns):
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:
            pass
    return killed


# ------------------------------------------------------------------------------- haproxy


def haproxy_config(front: str, backends: list[tuple[str, str]], *, stats_socket: Path,
                   postgres: tuple[str, str] | None = None) -> str:
    """The load balancer of the scale-out deployment (README, "Several hosts"): TCP mode, so each
    device's mutual TLS goes through untouched to a derflex host, which terminates it; hosts
    health-checked by a TCP connect every 500 ms (down after 2 misses); a connection that cannot
    reach its host is retried on another (`option redispatch`). `postgres` (listen, target): the
    test's relay to a PostgreSQL that listens on loopback only."""
    servers = "\n".join(f"    server {name} {addr}" for name, addr in backends)
    text = f"""\
global
    maxconn 4096
    log stderr format raw local0 info
    stats socket {stats_socket} mode 600 level admin

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 2s
    # longer than derflex's keep-alive (DERFLEX_KEEPALIVE_SECONDS, 75 s): the hosts close idle connections
    timeout client 120s
    timeout server 120s
    retries 3
    option redispatch 1

frontend sep2
    bind {front}
    default_backend derflex

backend derflex
    balance leastconn
    default-server check inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions
{servers}
"""
    if postgres is not None:
        text += f"""
# test only: PostgreSQL listens on 127.0.0.1; the hosts reach it through this relay
listen postgres
    bind {postgres[0]}
    timeout client 1h
    timeout server 1h
    server pg {postgres[1]}
"""
    return text


@dataclass
class Haproxy:
    """haproxy in the foreground (-db) with a config file; `state()` reads its stats socket."""

    config: Path
    stats_socket: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Haproxy:
        check = subprocess.run(["haproxy", "-c", "-f", str(self.config)], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refused its config:\n{check.stdout}{check.stderr}")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.config)], stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self.proc.returncode}:\n{self.log.read_text()}")
            if self.stats_socket.exists():
                try:
                    self.command("show info")
                    return self
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"haproxy did not start:\n{self.log.read_text()}")

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.stats_socket))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self, backend: str = "derflex") -> dict[str, dict[str, str]]:
        """Each server of `backend`: haproxy's stats row (status UP/DOWN, stot total sessions, …)."""
        raw = self.command("show stat")
        header, *rows = [r for r in raw.splitlines() if r.strip()]
        names = header.lstrip("# ").split(",")
        out = {}
        for row in rows:
            rec = dict(zip(names, row.split(","), strict=False))
            if rec.get("pxname") == backend and rec.get("svname") not in ("FRONTEND", "BACKEND"):
                out[rec["svname"]] = rec
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def dump(obj: object) -> str:
    return json.dumps(obj, indent=1, default=str)[:4000]
