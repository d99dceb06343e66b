"""`make conformance`: the CSIP-AUS harness (cactus-client) against a fresh derflex, one command.

    python -m server.conformance.driver [--procedures S-ALL-01,S-ALL-02] [options]

What it does, in order (progress on standard output):

 1. `.venv-conformance/` with Python ≥ 3.12 (cactus-client needs it): `pip install -e
    '.[conformance]'` (cactus-client, its test definitions and derflex's admin plugin, entry point
    `cactus_client.admin`) and cactus-client-notifications (the harness's webhook service; installed
    without its dependencies because it pins an older cactus-schema than cactus-client, and uses only
    the part that did not change). Rebuilt when the pins change.
 2. A dev PKI in the results folder (`derflex pki`): SERCA, MICA, the server certificate, two device
    clients (device-a, device-b), an aggregator client (its DER's LFDI is that of a certificate
    `aggregator-der` that is never used for TLS: the harness wants the aggregator's certificate
    LFDI kept for the aggregator's own EndDevice) and an operator credential for the admin API.
 3. The webhook service on 127.0.0.1 (https, the dev PKI's server certificate): the
    notificationURIs derflex is asked to POST to are https://127.0.0.1:PORT/webhook/<id>.
 4. For each procedure: a fresh `derflex serve` on a new home (SQLite, TLS 1.2 CCM8 — cactus-client
    speaks it; `--allow-gcm` is not needed; DERFLEX_NOTIFICATION_ALLOW=loopback unless set), `cactus run <procedure> <clients> --headless --timeout`,
    the server stopped, the verdict read. A fresh server per procedure because the harness expects
    each procedure to start from a clean server, and derflex has no admin operation to remove a
    device or its usage points.
 5. Reports in the results folder (gitignored `conformance-results/<UTC time>/`): `summary.md`,
    `results.json`, and per procedure `runs/<id>/report.md` (verdict, the failed step and why, the last
    request/response, what the admin plugin did), cactus-client's own folder (`report.html`,
    `requests/`, `cactus.log`) and the server's log. With all procedures run (or `--docs`) it
    rewrites the section "CSIP-AUS conformance harness (cactus-client)" of docs/interop.md.

S-ALL-50 simulates a client for 72 hours; it is stopped after `--long-seconds` (default 3600) and
reported CAPPED when nothing failed before that. Other procedures get `--timeout` seconds each.

Exit status: 0 when every procedure run passed, 1 otherwise, 2 on a setup error.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from server.conformance import report

ROOT = Path(__file__).resolve().parents[2]
NOTIFICATIONS_PIN = "cactus-client-notifications==0.1.0"
LONG_PROCEDURES = frozenset({"S-ALL-50"})
# procedures whose own waits exceed the default time limit (S-ALL-41: controls 5 and 10 minutes
# ahead; S-ALL-46: a 5-minute receiver outage, then the server's retry)
SLOW_PROCEDURES = {"S-ALL-41": 1800, "S-ALL-46": 1500, "S-ALL-44": 600, "S-ALL-45": 600}
CLIENT_PEN = 12345
CLIENT_PIN = 111115  # 11111 + its check digit
MAX_WATTS = 5000


class SetupError(Exception):
    """Something the run needs could not be made (no Python 3.12, pip failed, server did not start)."""


def say(message: str) -> None:
    print(message, flush=True)


# ------------------------------------------------------------------------------ environment


def find_python312(explicit: str | None) -> str:
    """A Python ≥ 3.12: --python, $CONFORMANCE_PYTHON, python3.1x on PATH, then pyenv's versions."""
    candidates = [explicit, os.environ.get("CONFORMANCE_PYTHON")]
    candidates += [shutil.which(f"python3.{minor}") for minor in (12, 13, 14)]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python3.1[2-9]")))
    for candidate in candidates:
        if not candidate or not Path(candidate).exists():
            continue
        out = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info >= (3, 12))"], capture_output=True, text=True
        )
        if out.stdout.strip() == "True":
            return candidate
    raise SetupError("cactus-client needs Python 3.12 or newer: none found (give one with --python)")


def conformance_pins() -> list[str]:
    """The `conformance` extra of pyproject.toml, as written there."""
    text = (ROOT / "pyproject.toml").read_text()
    start = text.index("conformance = [")
    block = text[start : text.index("]", start)]
    return [line.strip().strip('",') for line in block.splitlines()[1:] if line.strip().startswith('"')]


def ensure_venv(venv: Path, python: str | None) -> Path:
    """The harness's environment, (re)built when the pins changed; returns its bin folder."""
    stamp = venv / ".installed"
    want = json.dumps({"pins": conformance_pins(), "notifications": NOTIFICATIONS_PIN})
    if stamp.exists() and stamp.read_text() == want and (venv / "bin" / "cactus").exists():
        return venv / "bin"
    exe = find_python312(python)
    say(f"building {venv} with {exe} (cactus-client and the derflex admin plugin; about a minute)")
    if venv.exists():
        shutil.rmtree(venv)
    steps = [
        [exe, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[conformance]"],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", NOTIFICATIONS_PIN],
    ]
    for cmd in steps:
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise SetupError(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    stamp.write_text(want)
    return venv / "bin"


def catalog(bin_dir: Path) -> dict[str, Any]:
    out = subprocess.run(
        [str(bin_dir / "python"), "-m", "server.conformance.catalog"], capture_output=True, text=True, cwd=ROOT
    )
    if out.returncode != 0:
        raise SetupError(f"reading the harness's procedures failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)


def derflex_command() -> list[str]:
    exe = Path(sys.executable).parent / "derflex"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "server.cli"]


# -------------------------------------------------------------------------------- identities


def cert_identity(pem_file: Path) -> tuple[str, int]:
    """(LFDI, SFDI) of the first certificate in a PEM file (IEEE 2030.5 §6.3.4)."""
    text = pem_file.read_text()
    first = text[text.index("-----BEGIN CERTIFICATE-----") : text.index("-----END CERTIFICATE-----") + 25]
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(first)).hexdigest().upper()
    raw = int(digest[:9], 16)  # the left 36 bits
    check = (10 - sum(int(d) for d in str(raw)) % 10) % 10
    return digest[:40], raw * 10 + check


def make_pki(folder: Path, derflex: list[str]) -> dict[str, Any]:
    """The dev PKI and the clients' credentials; returns the harness's client configurations."""
    def run(*args: str) -> None:
        out = subprocess.run([*derflex, "pki", *args, "--dir", str(folder)], capture_output=True, text=True)
        if out.returncode != 0:
            raise SetupError(f"derflex pki {' '.join(args)} failed:\n{out.stdout}{out.stderr}")

    run("init")
    for name in ("device-a", "device-b", "aggregator-der"):
        run("device", name)
    run("device", "aggregator", "--aggregator")
    run("device", "conformance-admin", "--operator")
    clients = []
    for name in ("device-a", "device-b"):
        lfdi, sfdi = cert_identity(folder / "devices" / f"{name}.pem")
        clients.append(_client(name, "device", folder / "devices" / name, lfdi, sfdi))
    der_lfdi, der_sfdi = cert_identity(folder / "devices" / "aggregator-der.pem")
    clients.append(_client("aggregator", "aggregator", folder / "aggregators" / "aggregator", der_lfdi, der_sfdi))
    return {"clients": clients, "admin_cert": folder / "operators" / "conformance-admin"}


def _client(name: str, kind: str, stem: Path, lfdi: str, sfdi: int) -> dict[str, Any]:
    return {
        "id": name, "type": kind, "certificate_file": f"{stem}.pem", "key_file": f"{stem}.key",
        "lfdi": lfdi, "sfdi": sfdi, "pen": CLIENT_PEN, "pin": CLIENT_PIN, "max_watts": MAX_WATTS,
    }


def assign_clients(required: list[dict[str, str]], clients: list[dict[str, Any]]) -> list[str] | None:
    """Configured clients for a procedure's required ones, by type (devices first for "any")."""
    used: set[str] = set()
    chosen = []
    for need in required:
        match = next(
            (c for c in clients if c["id"] not in used and need["type"] in ("any", "None", c["type"])), None
        )
        if match is None:
            return None
        used.add(match["id"])
        chosen.append(match["id"])
    return chosen


# ---------------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(proc: subprocess.Popen, port: int, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SetupError(f"process exited with {proc.returncode}; log {log}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.3):
                return
        except OSError:
            time.sleep(0.2)
    stop(proc)
    raise SetupError(f"nothing listened on {port} within {seconds:.0f} s; log {log}")


def stop(proc: subprocess.Popen, grace: float = 20) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def start_notifications(bin_dir: Path, pki: Path, work: Path, plain: bool) -> tuple[subprocess.Popen, str, str]:
    port, admin_port = free_port(), free_port()
    log = work / "notifications.log"
    cmd = [str(bin_dir / "python"), "-m", "server.conformance.notifications", "--port", str(port),
           "--admin-port", str(admin_port), "--cert", str(pki / "server.pem"), "--key", str(pki / "server.key"),
           "--trust", str(pki / "trust.pem")]
    if plain:
        cmd.append("--plain")
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    wait_listening(proc, admin_port, log)
    scheme = "http" if plain else "https"
    return proc, f"{scheme}://127.0.0.1:{port}/", f"http://127.0.0.1:{admin_port}/"


def start_server(
    derflex: list[str], home: Path, pki: Path, allow_gcm: bool, plain_notifications: bool
) -> tuple[subprocess.Popen, int]:
    shutil.copytree(pki, home / "certs")
    port = free_port()
    log = home.parent / "server.log"
    # the webhook service listens on 127.0.0.1 (and on plain http with --plain-notifications):
    # derflex refuses such notificationURIs unless the operator allows them
    allow = "http,loopback" if plain_notifications else "loopback"
    env = {"DERFLEX_NOTIFICATION_ALLOW": allow, **os.environ, "DERFLEX_BECKN_BIND": "off", "DERFLEX_UI_BIND": "off"}
    cmd = [*derflex, "--home", str(home), "serve", "--bind", f"127.0.0.1:{port}"]
    if allow_gcm:
        cmd.append("--allow-gcm")
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=home)
    wait_listening(proc, port, log)
    token_file = home / "var" / "admin-token"
    deadline = time.monotonic() + 10
    while not token_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return proc, port


# ------------------------------------------------------------------------------------ a run


def run_procedure(
    proc_info: dict[str, Any], client_ids: list[str], ctx: dict[str, Any], timeout: int
) -> report.Result:
    pid = proc_info["id"]
    folder = ctx["work"] / "runs" / pid
    folder.mkdir(parents=True)
    (folder / "cactus").mkdir()
    server, port = start_server(ctx["derflex"], folder / "home", ctx["pki"], ctx["allow_gcm"], ctx["plain"])
    started = time.monotonic()
    try:
        config = {
            "output_dir": str(folder / "cactus"),
            "server": {
                "device_capability_uri": f"https://127.0.0.1:{port}/dcap",
                "verify_ssl": True,
                "verify_host_name": True,
                "serca_pem_file": str(ctx["pki"] / "serca.pem"),
                "notification_uri": ctx["notification_uri"],
                "notification_admin_uri": ctx["notification_admin_uri"],
                "pen": 0,
            },
            "clients": ctx["clients"],
        }
        config_file = folder / "cactus.yaml"
        config_file.write_text(json.dumps(config, indent=1))  # JSON is YAML
        admin = ctx["admin_cert"]
        env = {
            **os.environ,
            "COLUMNS": "240",
            "DERFLEX_CONFORMANCE_ADMIN_URL": f"https://127.0.0.1:{port}/admin/api/v1",
            "DERFLEX_CONFORMANCE_ADMIN_TOKEN_FILE": str(folder / "home" / "var" / "admin-token"),
            "DERFLEX_CONFORMANCE_ADMIN_CERT": f"{admin}.pem",
            "DERFLEX_CONFORMANCE_ADMIN_KEY": f"{admin}.key",
            "DERFLEX_CONFORMANCE_ADMIN_CA": str(ctx["pki"] / "serca.pem"),
            "DERFLEX_CONFORMANCE_FRESH_SERVER": "1",
            "DERFLEX_CONFORMANCE_LOG": str(folder / "admin.log"),
        }
        cmd = [str(ctx["bin"] / "cactus"), "run", pid, *client_ids, "--headless", "--timeout", str(timeout),
               "-c", str(config_file)]
        with (folder / "cactus-stdout.txt").open("w") as out, (folder / "cactus-stderr.txt").open("w") as err:
            harness = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=folder)
            try:
                harness.wait(timeout=timeout + 120)
            except subprocess.TimeoutExpired:
                stop(harness, grace=10)
    finally:
        seconds = time.monotonic() - started
        stop(server)
    console = (folder / "cactus-stdout.txt").read_text(errors="replace")
    runs = sorted((folder / "cactus").glob(f"run * - {pid}"))
    result = report.read_run(
        pid, proc_info["description"], runs[-1] if runs else None, console, proc_info["steps"], seconds,
        timed_out=seconds >= timeout, capped=pid in LONG_PROCEDURES,
    )
    with_admin_log(result, folder)
    (folder / "report.md").write_text(report.procedure_report(result))
    return result


def with_admin_log(result: report.Result, folder: Path) -> None:
    """The plugin's log beside the result; a failed admin setup is why nothing ran."""
    if (folder / "admin.log").exists():
        result.admin = (folder / "admin.log").read_text().splitlines()
    failed_setup = [line for line in result.admin if "setup FAILED" in line]
    if failed_setup and result.reason == "not executed":
        result.reason = f"no step ran: the admin plugin's setup failed ({failed_setup[-1].split('FAILED: ', 1)[-1]})"


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True, cwd=ROOT).stdout.strip()
    return (out.stdout.strip() or "unknown") + (" + uncommitted changes" if dirty else "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m server.conformance.driver",
        description=__doc__.split("\n\n", 1)[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--procedures", default="", help="comma-separated ids (e.g. S-ALL-01,S-ALL-02); default all")
    parser.add_argument("--exclude", default="", help="comma-separated ids to leave out")
    parser.add_argument("--timeout", type=int, default=300,
                        help="seconds per procedure (default 300; S-ALL-41/44/45/46 get more)")
    parser.add_argument("--long-seconds", type=int, default=3600,
                        help="seconds S-ALL-50 (72 h) runs before it is stopped (default 3600)")
    parser.add_argument("--results", type=Path, default=ROOT / "conformance-results",
                        help="folder for the runs (default conformance-results/)")
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv-conformance",
                        help="the harness's Python 3.12 environment (default .venv-conformance/)")
    parser.add_argument("--python", help="a Python ≥ 3.12 to build it with (default: found on PATH or in pyenv)")
    parser.add_argument("--allow-gcm", action="store_true", help="start derflex with --allow-gcm (not needed)")
    parser.add_argument("--plain-notifications", action="store_true",
                        help="serve the webhook over plain http instead of https")
    parser.add_argument("--rebuild", type=Path, metavar="RUN_FOLDER",
                        help="run nothing: read an earlier run folder again and rewrite its reports")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="RUN_FOLDER",
                        help="rewrite the docs section from these run folders (oldest first; a procedure's "
                             "newest row wins, each row names its commit) and run nothing")
    parser.add_argument("--note", action="append", help="a sentence to add to the docs section (repeatable)")
    parser.add_argument("--docs", action=argparse.BooleanOptionalAction, default=None,
                        help="rewrite docs/interop.md's section (default: only when every procedure ran)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except SetupError as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    bin_dir = ensure_venv(args.venv, args.python)
    cat = catalog(bin_dir)
    known = {p["id"]: p for p in cat["procedures"]}
    if args.rebuild:
        return rebuild(args, args.rebuild, cat)
    if args.merge:
        return merge(args, cat)
    wanted = [p.strip() for p in args.procedures.split(",") if p.strip()] or list(known)
    unknown = [p for p in wanted if p not in known]
    if unknown:
        raise SetupError(f"unknown procedure(s): {', '.join(unknown)}; known: {', '.join(known)}")
    excluded = {p.strip() for p in args.exclude.split(",") if p.strip()}
    wanted = [p for p in wanted if p not in excluded]
    work = args.results / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    work.mkdir(parents=True)
    derflex = derflex_command()
    say(f"cactus-client {cat['versions']['cactus-client']}, test definitions "
        f"{cat['versions']['cactus-test-definitions']}; derflex {git_commit()}; results in {work}")
    pki = work / "pki"
    made = make_pki(pki, derflex)
    notifier, notification_uri, notification_admin_uri = start_notifications(bin_dir, pki, work,
                                                                             args.plain_notifications)
    ctx = {"work": work, "pki": pki, "derflex": derflex, "bin": bin_dir, "clients": made["clients"],
           "admin_cert": made["admin_cert"], "allow_gcm": args.allow_gcm, "plain": args.plain_notifications,
           "notification_uri": notification_uri, "notification_admin_uri": notification_admin_uri}
    results: list[report.Result] = []
    try:
        for n, pid in enumerate(wanted, 1):
            info = known[pid]
            clients = assign_clients(info["clients"], made["clients"])
            if clients is None:
                results.append(report.Result(pid, info["description"], "SKIPPED", reason="not enough clients"))
                continue
            limit = args.long_seconds if pid in LONG_PROCEDURES else max(args.timeout, SLOW_PROCEDURES.get(pid, 0))
            say(f"[{n:2}/{len(wanted)}] {pid} {info['description']} ({', '.join(clients)}) …")
            result = run_procedure(info, clients, ctx, limit)
            results.append(result)
            where = f" at {result.failed_step!r}: {(result.reason or '')[:160]}" if not result.passed else ""
            say(f"        {result.status} in {result.seconds:.0f} s{where}")
    finally:
        stop(notifier)
        write_summary(work, results, cat["versions"], commit=git_commit())
    return finish(args, work, results, cat, everything=set(wanted) == set(known))


def finish(args: argparse.Namespace, work: Path, results: list[report.Result], cat: dict[str, Any],
           everything: bool) -> int:
    docs = args.docs if args.docs is not None else everything
    if docs and results:
        notes = list(args.note or [])
        capped = [r for r in results if r.procedure in LONG_PROCEDURES]
        for r in capped:
            notes.append(f"{r.procedure} (72 hours of client simulation) ran for its first {r.seconds:.0f} s only.")
        saved = json.loads((work / "results.json").read_text())
        commit = saved.get("commit", git_commit()) if isinstance(saved, dict) else git_commit()
        section = report.interop_section(results, cat["versions"], commit=commit, notes=notes)
        path = ROOT / "docs" / "interop.md"
        path.write_text(report.replace_section(path.read_text(), section))
        say(f"docs/interop.md: section '{report.SECTION_START[3:]}' rewritten")
    say(f"{sum(r.passed for r in results)} of {len(results)} passed ({report.counts(results)}); {work}/summary.md")
    return 0 if results and all(r.passed for r in results) else 1


def rebuild(args: argparse.Namespace, work: Path, cat: dict[str, Any]) -> int:
    """Read an earlier run folder again (e.g. after the console parser improved)."""
    known = {p["id"]: p for p in cat["procedures"]}
    saved = json.loads((work / "results.json").read_text())
    if isinstance(saved, list):  # written before results.json carried versions and commit
        saved = {"results": saved, "commit": "unknown"}
    results = []
    for old in saved["results"]:
        pid = old["procedure"]
        folder = work / "runs" / pid
        if old["status"] == "SKIPPED" or not folder.is_dir():
            results.append(report.Result(**old))
            continue
        runs = sorted((folder / "cactus").glob(f"run * - {pid}"))
        result = report.read_run(
            pid, known[pid]["description"], runs[-1] if runs else None,
            (folder / "cactus-stdout.txt").read_text(errors="replace"), known[pid]["steps"], old["seconds"],
            timed_out=old["status"] in ("TIMEOUT", "CAPPED"), capped=pid in LONG_PROCEDURES,
        )
        with_admin_log(result, folder)
        (folder / "report.md").write_text(report.procedure_report(result))
        results.append(result)
    write_summary(work, results, cat["versions"], commit=saved.get("commit", "unknown"))
    return finish(args, work, results, cat, everything={r.procedure for r in results} == set(known))


def merge(args: argparse.Namespace, cat: dict[str, Any]) -> int:
    """The docs section from several run folders (--merge): each procedure's newest row, with the
    commit it ran on; rows of the first folder that no later one re-ran are marked as not re-run."""
    runs = []
    for folder in args.merge:
        saved = json.loads((folder / "results.json").read_text())
        runs.append(saved if isinstance(saved, dict) else {"results": saved, "commit": "unknown"})
    results = report.merge_runs(runs)
    notes = list(args.note or [])
    section = report.interop_section(results, cat["versions"], commit="", notes=notes)
    path = ROOT / "docs" / "interop.md"
    path.write_text(report.replace_section(path.read_text(), section))
    say(f"docs/interop.md: section '{report.SECTION_START[3:]}' rewritten from {len(runs)} run(s): "
        f"{sum(r.passed for r in results)} of {len(results)} pass ({report.counts(results)})")
    return 0


def write_summary(work: Path, results: list[report.Result], versions: dict[str, str], commit: str) -> None:
    saved = {"versions": versions, "commit": commit, "results": [asdict(r) for r in results]}
    (work / "results.json").write_text(json.dumps(saved, indent=1))
    lines = [f"# Conformance run {work.name}", "", f"Versions: {versions}; derflex {commit}", "",
             f"{report.counts(results)}", "", *report.summary_table(results), ""]
    (work / "summary.md").write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
