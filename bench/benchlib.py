"""What the benchmark scripts share: a description of the machine they ran on, a private
PostgreSQL database on this machine that is dropped at the end, and phase timers. Imported by the scripts in this
folder (run as `python bench/bench_*.py`, so this folder is on the path)."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def machine_info(packages: tuple[str, ...] = ("Flask", "SQLAlchemy", "numpy", "psycopg")) -> dict[str, Any]:
    """Date, cores, CPU model, memory, Python, SQLite, platform, load and package versions."""
    import sqlite3
    from importlib.metadata import PackageNotFoundError, version

    model, mem = "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except OSError:
        pass
    versions = {}
    for dist in packages:
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = "-"
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory": mem,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "packages": versions,
    }


class PgDatabase:
    """A private database on a local PostgreSQL server, dropped at the end (only if we made it)."""

    def __init__(self, admin_url: str, prefix: str = "derflex_bench"):
        from sqlalchemy.engine import make_url

        url = make_url(admin_url)
        if url.host not in LOOPBACK:
            raise SystemExit("--postgres must point at this machine (127.0.0.1, localhost or ::1)")
        self.name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.admin_dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.url = url.set(drivername="postgresql", database=self.name).render_as_string(hide_password=False)
        self.created = False

    def _admin(self) -> Any:
        import psycopg

        return psycopg.connect(self.admin_dsn, autocommit=True, connect_timeout=5)

    def create(self) -> None:
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        self.created = True

    def version(self) -> str:
        """The server's version and the settings that matter for write latency."""
        with self._admin() as conn:
            row = conn.execute("SHOW server_version").fetchone()
            settings = {name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                        for name in ("shared_buffers", "synchronous_commit", "max_connections")}
        return f"{row[0] if row else '?'} ({', '.join(f'{k} {v}' for k, v in settings.items())})"

    def drop(self) -> None:
        if not self.created:
            return
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.created = False


def clean_up(db: Any, pg: PgDatabase | None, tmp: Path, keep: bool, say: Callable[[str], None]) -> None:
    """After a run: close the database, drop the scratch PostgreSQL database, remove the home."""
    if db is not None:
        db.dispose()
    if pg is not None:
        try:
            pg.drop()
        except Exception as exc:  # report, do not hide the run's own error
            say(f"could not drop {pg.name}: {exc}")
    if keep:
        say(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------ phase timers


class Timers:
    """Inclusive wall time and call count per name, from wrappers installed for one run.

    `wrap(owner, attr)` times every call of owner.attr; with `phase=True` the calls made inside it
    are counted per phase ("gather/…"); with `keep=True` the last result is kept in `last`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.last: dict[str, Any] = {}
        self._undo: list[tuple[Any, str, Any]] = []
        self.phase = ""  # the enclosing phase: inner calls are counted per phase

    def wrap(self, owner: Any, attr: str, name: str | None = None, *, phase: bool = False, keep: bool = False) -> None:
        original = getattr(owner, attr)
        raw = owner.__dict__[attr] if isinstance(owner, type) else original  # a classmethod stays one
        label = name or attr
        seconds, calls, last = self.seconds, self.calls, self.last
        perf = time.perf_counter

        def timed(*a: Any, **kw: Any) -> Any:
            key = label if phase or not self.phase else f"{self.phase}/{label}"
            outer = self.phase
            if phase:
                self.phase = label
            t0 = perf()
            try:
                out = original(*a, **kw)
            finally:
                seconds[key] += perf() - t0
                calls[key] += 1
                self.phase = outer
            if keep:
                last[label] = out
            return out

        self._undo.append((owner, attr, raw))
        setattr(owner, attr, timed)

    def restore(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()


class TimedDatabase:
    """The Database a timed service is given: the same engine, with the commit timed."""

    def __init__(self, db: Any, timers: Timers):
        self._db, self._timers = db, timers
        self.url, self.engine = db.url, db.engine

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        cm = self._db.transaction()
        session = cm.__enter__()
        try:
            yield session
        except BaseException:
            if not cm.__exit__(*sys.exc_info()):
                raise
            return
        t0 = time.perf_counter()
        cm.__exit__(None, None, None)
        self._timers.seconds["commit"] += time.perf_counter() - t0
        self._timers.calls["commit"] += 1
