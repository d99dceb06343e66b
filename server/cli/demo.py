"""`derflex demo`: the whole product, end to end, on the embedded default, in about five minutes.

What it does, step by step (each step says what it is doing; any failure stops the demo with one
clear line and a pointer to the server's log, and everything started is shut down):

1. a fresh home (`--home`, default ./var/demo: new, empty, or made by an earlier demo and emptied;
   any other folder is refused): database, dev PKI, admin token;
2. `derflex serve` started as a real process (2030.5 over TLS 1.2 CCM8, the Beckn BPP, the
   scheduler reconciling every few seconds, devices told to poll every few seconds);
3. N simulated devices (der_sim.fleet: batteries, controllable loads, EV chargers) with their own
   certificates register over mutual TLS, report their DER ratings and post a week of history;
4. the utility authors "Peak Saver": a grid node, a window of a few minutes starting shortly,
   a request sized to the fleet, pay-as-clear under a price cap, settlement terms with a revenue
   split (platform fee, wheeling, tax);
5. N customers are enrolled through the Beckn facade by the project's BAP (search, select, init,
   confirm, signed with Ed25519), each with the bid curve its device derives from its state;
6. the scheduler clears the market and publishes one DERControl per device; the devices act,
   answer with Responses and mirror their meter readings each minute;
7. after the window, measurement and settlement run; the BAP hears the settlement (on_status);
8. a summary (requested vs delivered kW per interval, clearing price, responses, payouts) and a
   PNG of requested vs delivered.

The operator dashboard runs beside the server (a free port on 127.0.0.1); step 2 prints its URL and
a login (`demo`, an operator with a random password), so the window can be watched live. `--keep`
leaves the server, its dashboard and the devices running after the summary until Ctrl-C.

`--notify` runs the same story with the fleet driven by 2030.5 notifications: the devices share
one HTTPS notification receiver (der_sim.notifications, the dev PKI's server certificate, on
127.0.0.1, which the demo's server is told to allow: DERFLEX_NOTIFICATION_ALLOW=loopback), subscribe
to their program documents and walk them only every 10 × pollRate; the controls reach them as
notifications. The summary adds the notifications received and the requests made against what the
same fleet polling every 10 s would have made (der_sim.fleet.polling_estimate).

`--beckn 2.0` enrolls the customers over Beckn v2.0.0 LTS instead (server.cli.demo_v2: our v2 BAP
discovers the program and confirms one contract per customer with a block bid, on_confirm answers
what cleared, and each contract hears its settled on_status with the DEGContract revenue flows);
the summary says what went over v2.

`--envelopes` shows a feeder's export envelope (`EnvelopeDemo`, programs.envelopes): rooftop PV
homes whose simulated local time is noon, enrolled behind feeder-7 in "Solar soak" (export at most
1.5 kW per site, paid per kWh curtailed against the baseline); the scheduler publishes one
DERControl per home with csipaus:opModExpLimW, the inverters cut their output, and the picture
(default demo-envelope.png) shows each site's mirrored export held under the limit; the summary
fails the demo if any reading in the window exported more.
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import click

from server.cli.demo_v2 import BecknV2Enrollment

MIX = {"battery": 0.45, "load": 0.35, "ev_charger": 0.20}
MARKER = ".derflex-demo"  # a home the demo made (and may empty again)
PRICE_CAP = 12.0  # INR per kWh
HISTORY_DAYS = 7
RESPONSE_NAMES = {1: "received", 2: "started", 3: "completed", 4: "opted out", 5: "opted out",
                  6: "cancelled", 7: "superseded", 8: "partially opted out", 14: "aborted (other program)",
                  252: "not applicable", 253: "invalid", 254: "received late"}


class DemoError(click.ClickException):
    """A step failed: the message says which and why."""

    def format_message(self) -> str:
        return self.message


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _say(text: str) -> None:
    click.echo(text, err=False)


def _step(n: int, text: str) -> None:
    click.secho(f"[{n}/8] {text}", bold=True)


def _wait(predicate: Any, seconds: float, what: str, log: Path | None = None, poll: float = 0.5) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(poll)
    hint = f" (server log: {log})" if log else ""
    raise DemoError(f"derflex demo: timed out after {seconds:.0f} s waiting for {what}{hint}")


class Demo:
    """The demo's state, so that everything it started can be stopped whatever happens."""

    enroll_label = "the BAP enrolls {n} customers through the Beckn facade"
    enroll_seconds = 0.25  # per customer (the window opens after them): server.cli.demo_v2 takes longer

    def __init__(self, home: Path, devices: int, window_minutes: int, plot: Path, seed: int,
                 lead_s: int = 45, notify: bool = False) -> None:
        self.home, self.n, self.minutes, self.plot, self.seed = home, devices, window_minutes, plot, seed
        self.lead, self.notify = lead_s, notify
        self.port, self.beckn_port, self.receiver_port = _free_port(), _free_port(), _free_port()
        self.ui_port = _free_port()
        self.ui_password = secrets.token_urlsafe(12)  # the `demo` operator's, printed with the dashboard's URL
        self.env = {
            "DERFLEX_BECKN_BIND": f"127.0.0.1:{self.beckn_port}", "DERFLEX_SCHEDULER": "true",
            "DERFLEX_UI_BIND": f"127.0.0.1:{self.ui_port}",
            "DERFLEX_SCHEDULER_RECONCILE_SECONDS": "3", "DERFLEX_POLL_RATE": "10",
        }
        if notify:  # the fleet's receiver listens on 127.0.0.1
            self.env["DERFLEX_NOTIFICATION_ALLOW"] = "loopback"
        self.server: subprocess.Popen[bytes] | None = None
        self.fleet: Any = None
        self.receiver: Any = None
        self.db: Any = None
        self.log = home / "server.log"

    # ------------------------------------------------------------------------------ steps
    def prepare(self) -> None:
        from server.bootstrap import prepare
        from server.config import from_env

        if self.home.exists() and any(self.home.iterdir()):
            if not (self.home / MARKER).exists():  # never wipe a folder the demo did not make
                raise DemoError(f"derflex demo: {self.home} exists and is not a demo home (no {MARKER}); "
                                "give an empty or new folder with --home")
            shutil.rmtree(self.home)
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / MARKER).write_text("made by `derflex demo`; emptied by the next run\n")
        self.settings = from_env({**os.environ, **self.env}, home=self.home,
                                 bind=f"127.0.0.1:{self.port}")
        self.db = prepare(self.settings, say=lambda m: _say(f"  {m}"))

    def start_server(self) -> None:
        cmd = [sys.executable, "-m", "server.cli", "--home", str(self.home), "serve", "--bind", f"127.0.0.1:{self.port}"]
        with self.log.open("wb") as out:
            self.server = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=self.home,
                                           env={**os.environ, **self.env}, start_new_session=True)

        def up() -> bool:
            if self.server is not None and self.server.poll() is not None:
                raise DemoError(f"derflex demo: the server exited with code {self.server.returncode}; "
                                f"its log: {self.log}")
            try:
                for port in (self.port, self.beckn_port, self.ui_port):
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False

        _wait(up, 60, "the server to listen", self.log, poll=0.2)
        _say(f"  2030.5 on https://127.0.0.1:{self.port} (TLS 1.2, ECDHE-ECDSA-AES128-CCM8, client certificates); "
             f"Beckn BPP on http://127.0.0.1:{self.beckn_port}/beckn; log {self.log}")
        self.add_dashboard_user()

    def add_dashboard_user(self) -> None:
        """A `demo` operator for the dashboard (random password, printed), so the window can be watched."""
        from server.services import accounts

        with self.db.transaction() as s:
            accounts.add_user(s, "demo", "operator", self.ui_password, int(time.time()))
        _say(f"  dashboard: {self.dashboard_url()} — sign in as demo / {self.ui_password} "
             "(the dev PKI's certificate: your browser asks you to accept it once)")

    def dashboard_url(self, path: str = "/") -> str:
        return f"https://127.0.0.1:{self.ui_port}{path}"

    def keep_running(self) -> None:
        """--keep: leave the server and the fleet running until Ctrl-C, so the window can be clicked through."""
        click.secho("\nThe demo keeps running (--keep)", bold=True)
        _say(f"  dashboard: {self.dashboard_url()} — sign in as demo / {self.ui_password}")
        _say(f"  the window that just ran: {self.dashboard_url(f'/programs/{self.program_id}/windows/{self.key}')}")
        _say(f"  its settlement: {self.dashboard_url(f'/programs/{self.program_id}/windows/{self.key}/settlement')}")
        _say("  Ctrl-C stops the server and the devices")
        try:
            while self.server is not None and self.server.poll() is None:
                time.sleep(1.0)
        except KeyboardInterrupt:
            click.echo("")
            return
        raise DemoError(f"derflex demo: the server exited with code {self.server.returncode if self.server else '?'} "
                        f"while kept running; its log: {self.log}")

    def start_fleet(self) -> None:
        from der_sim.agent import AgentConfig
        from der_sim.fleet import Fleet, certificates, make_devices, progress_printer
        from der_sim.notifications import NotificationReceiver
        from server.bootstrap import tls_files
        from server.pki import DevPKI

        progress = progress_printer()
        devices = make_devices(self.n, seed=self.seed, mix=MIX, prefix="home")
        creds = certificates(DevPKI(self.settings.certs_dir), devices, progress)
        config = AgentConfig(poll_rate=10, post_rate=20, interval_s=60, time_sync_s=60, pin=None, notify=self.notify)
        tls = tls_files(self.settings)
        receiver = NotificationReceiver(tls.cert, tls.key, tls.trust) if self.notify else None
        self.fleet = Fleet(devices, creds, "127.0.0.1", self.port, tls.trust, config=config,
                           seed=self.seed, workers=min(16, max(2, self.n // 4)), receiver=receiver)
        stored = self.fleet.backfill(HISTORY_DAYS, 900, progress=progress)
        _say(f"  {stored:,} history readings stored (15-minute averages, {HISTORY_DAYS} days per device)")
        self.fleet.start()
        if receiver is not None:
            _say(f"  notifications to {receiver.base_url}<LFDI> (one receiver for the fleet, TLS 1.2 CCM8, "
                 "the server's certificate required); devices walk their programs only every 100 s")
        up = self.fleet.wait_registered(90, progress)
        if up < self.n:
            raise DemoError(f"derflex demo: only {up} of {self.n} devices registered and reported "
                            f"(phases {self.fleet.phases()}); server log: {self.log}")
        kinds = Counter(d.kind for d in devices)
        names = {"battery": ("battery", "batteries"), "load": ("controllable load", "controllable loads"),
                 "ev_charger": ("EV charger", "EV chargers"), "pv": ("PV inverter", "PV inverters")}
        _say("  " + ", ".join(f"{v} {names[k][v != 1]}" for k, v in sorted(kinds.items())))

    def author(self) -> None:
        from server.services.flex import grid_nodes, programs as flex

        offers = self.fleet.offers(self.minutes * 60, 0.0, PRICE_CAP)
        at_cap = sum(max((kw for _, kw in c), default=0.0) - min((kw for _, kw in c), default=0.0) for c in offers)
        self.requested = max(1.0, round(0.5 * at_cap, 1))
        now = datetime.now(timezone.utc)
        # enrolling takes about a quarter of a second per customer; the window opens on the first
        # whole minute after that and the lead (readings are per minute, aligned to it)
        ready = now + timedelta(seconds=self.lead + 10 + self.n * self.enroll_seconds)
        start = ready.replace(second=0, microsecond=0) + timedelta(minutes=1)
        end = start + timedelta(minutes=self.minutes)
        program = {
            "name": "Peak Saver", "currency": "INR", "description": "Peak Saver",
            "window": {"weekdays": list(range(7)), "start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"),
                       "tz": "UTC"},
            "requested_kw": self.requested, "interval_s": 60, "price_cap": PRICE_CAP,
            "incentive": {"kind": "pay_as_clear"}, "eligible_kinds": sorted(MIX), "lead_time_s": self.lead,
            "grid_node_ids": ["feeder-7"],
            "measurement": {
                "interval_s": 60, "delay_s": 25, "resettle_days": 1,
                "baseline": {"x": 5, "y": 5, "min_days": 3, "lookback_days": 10, "day_types": "any"},
                "split": {"grid_fee_rate": "0.2", "aggregator_fee_rate": "0.1", "tax_rate": "1/9",
                          "tax_mode": "inclusive", "aggregator": "derflex-platform", "grid_operator": "discom-feeder-7",
                          "government": "gst"},
            },
        }
        t = int(time.time())
        with self.db.transaction() as s:
            grid_nodes.put_grid_node(s, {"name": "substation-1", "adder_per_percent": 0.0}, t)
            grid_nodes.put_grid_node(s, {"name": "feeder-7", "parent": "substation-1", "load_percent": 80.0,
                                   "adder_per_percent": 0.01}, t)
            made = flex.create_program(s, program, t)
        self.program_id, self.start, self.end = made["id"], int(start.timestamp()), int(end.timestamp())
        self.key = start.date().isoformat()
        local = lambda d: d.astimezone().strftime("%H:%M")  # noqa: E731
        _say(f"  program {made['id']} \"Peak Saver\": {self.requested} kW asked from {local(start)} to {local(end)} "
             f"(local time), price cap ₹{PRICE_CAP:g}/kWh, published {self.lead} s ahead; grid node feeder-7")

    def enroll(self) -> None:
        from der_sim.bap import Bap, BapClient, BapIdentity, Customer, DerDevice, registry_lookup
        from der_sim.bap_receiver import CallbackReceiver
        from der_sim.fleet import progress_printer
        from server.services.bpp import keys as beckn_keys

        ours = beckn_keys.our_entry(self.settings, datetime.now(timezone.utc))
        identity = BapIdentity.generate("bap.demo.local", f"http://127.0.0.1:{self.receiver_port}/bap")
        beckn_keys.add_to_file_registry(self.settings, identity.subscriber())
        self.receiver = CallbackReceiver(self.settings.beckn_subscriber_id, registry_lookup([ours]),
                                         port=self.receiver_port, path="/bap").start()
        client = BapClient(identity, self.settings.beckn_subscriber_id, f"http://127.0.0.1:{self.beckn_port}/beckn",
                           key_lookup=registry_lookup([ours]), domain=self.settings.beckn_domain, ttl_s=30)
        self.bap = Bap(client, self.receiver, timeout=30)
        items = self.bap.search(text="Peak Saver")["items"]
        if not items:
            raise DemoError("derflex demo: the BAP's search found no \"Peak Saver\" program in the catalog")
        offers = self.fleet.offers(self.minutes * 60, 0.0, PRICE_CAP)
        customers = [Customer(f"Customer {i + 1}", email=f"customer{i + 1}@example.org", devices=(DerDevice(
            d.agent.lfdi, kind=d.kind, grid_node="feeder-7",
            bid_curve=[{"price": round(p, 4), "powerKW": round(kw, 3)} for p, kw in c] or None),))
            for i, (d, c) in enumerate(zip(self.fleet.devices, offers))]
        show = progress_printer()
        results = self.bap.enroll_many(customers, items[0]["id"], workers=4,
                                       on_progress=lambda done, total, _r: show("customers enrolled", done, total))
        failed = [r for r in results if not r["ok"]]
        if failed:
            raise DemoError(f"derflex demo: {len(failed)} of {len(results)} enrollments failed, e.g. "
                            f"{failed[0]['customer']}: {failed[0]['error']}")
        self.orders = results

    def run_window(self) -> None:
        from server.db import flex as store

        def state() -> str | None:
            with self.db.transaction() as s:
                w = store.window(s, self.program_id, self.key)
                return w.state if w is not None and w.state in ("published", "republished", "missed") else None

        wait = self.start - self.lead - time.time()
        _say(f"  the scheduler publishes in {max(0, wait):.0f} s …")
        got = _wait(state, max(0, wait) + 60, "the window to be published", self.log, poll=1.0)
        if got == "missed":
            raise DemoError(f"derflex demo: the window was missed (not published before it ended); log {self.log}")
        with self.db.transaction() as s:
            w = store.window(s, self.program_id, self.key)
            clearings = store.clearings(s, w.id, w.revision)
            self.clearing = [(c.price, c.quantity_kw, c.requested_kw, c.feasible) for c in clearings]
        price, qty = self.clearing[0][0], self.clearing[0][1]
        _say(f"  cleared {qty:.1f} kW at ₹{price:.3f}/kWh (devices behind feeder-7 are paid its locational "
             "adder on top); one DERControl per device per minute published")
        left = self.end - time.time()
        _say(f"  window runs for {self.minutes} min: devices act and mirror readings …")
        self._countdown(left, "window ends in")

    def _countdown(self, seconds: float, label: str) -> None:
        end = time.monotonic() + max(0.0, seconds)
        tty = sys.stdout.isatty()
        while (left := end - time.monotonic()) > 0:
            if tty:
                click.echo(f"\r  {label} {left:4.0f} s  (devices: {self.fleet.phases()})   ", nl=False)
            time.sleep(min(1.0, left))
        if tty:
            click.echo("")

    def settle(self) -> dict[str, Any]:
        from server.db import flex as store
        from server.db import settlement as records

        def settled() -> Any:
            with self.db.transaction() as s:
                w = store.window(s, self.program_id, self.key)
                run = records.current_run(s, w.id) if w is not None else None
                return None if run is None else run.version

        _say("  waiting for the last readings and the settlement (25 s delay for late readings) …")
        _wait(settled, 25 + 120, "the settlement", self.log, poll=1.0)
        self.hear_settlement()
        with self.db.transaction() as s:
            from server.services.flex import reports as settlement_reports

            report = settlement_reports.window_report(s, self.program_id, self.key, limit=1000)
            png = settlement_reports.window_png(s, self.program_id, self.key)
        self.plot.parent.mkdir(parents=True, exist_ok=True)
        self.plot.write_bytes(png)
        return report

    def hear_settlement(self) -> None:
        """What the BAP heard of the settlement (on_status pushed through the outbox)."""
        first = self.orders[0]
        seq, deadline = 0, time.monotonic() + 30
        try:  # the first pushes tell of the publish; the settlement's carries a "settlement" tag group
            while True:
                push = self.bap.wait_push(first["transaction_id"], action="on_status", after_seq=seq,
                                          timeout=max(0.1, deadline - time.monotonic()))
                seq = push["seq"]
                tags = {g["descriptor"]["code"]: {t["descriptor"]["code"]: t["value"] for t in g["list"]}
                        for g in (push["message"] or {}).get("order", {}).get("tags") or []}
                if "settlement" in tags:
                    quote = push["message"]["order"]["quote"]["price"]
                    _say(f"  the BAP received the settlement of order {first['order_id'][:8]}… (on_status, signed): "
                         f"₹{quote['value']} in all, ₹{push['message']['order']['payments'][0]['params']['amount']} "
                         "to the customer")
                    break
        except Exception as exc:  # the settlement is stored either way; say what the BAP saw
            _say(f"  (the BAP did not see the settlement push in time: {exc})")

    def summary(self, report: dict[str, Any]) -> None:
        from sqlalchemy import func, select

        from server.db import derp as der_store
        from server.db.rsps import DerResponse

        s_ = report.get("summary", report)
        click.secho("\nSummary", bold=True)
        _say(f"  {'interval (local)':<18}{'asked kW':>10}{'cleared kW':>12}{'delivered kW':>14}{'paid ₹/kWh':>13}")
        for iv in s_["intervals"]:
            t = datetime.fromisoformat(iv["start"].replace("Z", "+00:00")).astimezone().strftime("%H:%M")
            _say(f"  {t:<18}{iv['requested_kw']:>10.1f}{iv['cleared_kw']:>12.1f}{(iv['delivered_kw'] or 0):>14.1f}"
                 f"{(iv['price'] or 0):>13.3f}")
        asked, delivered = s_["cleared_kwh"] or 0.0, s_["delivered_kwh"] or 0.0
        share = f" ({100 * delivered / asked:.0f} % of cleared)" if asked else ""
        _say(f"  energy: {delivered:.2f} kWh delivered of {asked:.2f} kWh cleared{share}; "
             f"{s_['devices']} devices, baselines {s_['methods']}")
        with self.db.transaction() as s:
            ev = der_store.DerEvent
            program = s.scalar(select(ev.program_id).where(ev.start >= self.start - 1).limit(1))
            counts = dict(s.execute(select(DerResponse.status, func.count()).join(ev, ev.id == DerResponse.event_id)
                                    .where(ev.program_id == program).group_by(DerResponse.status)).all())
        _say("  responses: " + ", ".join(f"{RESPONSE_NAMES.get(k, k)} {v}" for k, v in sorted(counts.items())))
        _say("  payouts:")
        for f in s_["flows"]:
            if f["role"] == "SELLER":
                continue
            _say(f"    {f['description']:<34} {f['party']:<20} ₹{f['amount']:>10}")
        seller = sum(f["amount_minor"] for f in s_["flows"] if f["role"] == "SELLER")
        _say(f"    {'Flexibility delivered (customers)':<34} {str(self.n) + ' customers':<20} ₹{seller / 100:>10.2f}")
        _say(f"    {'total':<34} {'':<20} ₹{s_['total_minor'] / 100:>10.2f}")
        fleet = self.fleet.summary()
        lat = fleet["latency"]
        _say(f"  2030.5 traffic: {fleet['requests']:,} requests, {fleet['failed_requests']} failed, "
             f"p50 {lat.get('p50_ms', 0)} ms, p99 {lat.get('p99_ms', 0)} ms")
        if "notifications" in fleet:
            got, c = fleet["notifications"], fleet["counters"]
            polling = fleet["polling_estimate"]
            saved = f" ({100 * (1 - fleet['requests'] / polling):.0f} % fewer)" if polling else ""
            _say(f"  driven by notifications: {got.get('received', 0):,} received over {got.get('connections', 0)} "
                 f"connection(s), {c.get('subscriptions', 0):,} subscriptions, {c.get('polls', 0):,} program walks; "
                 f"{fleet['requests']:,} requests vs ≈ {polling:,} polling every 10 s{saved}")
        _say(f"  picture: {self.plot}")

    # ------------------------------------------------------------------------------ shutdown
    def close(self) -> None:
        if self.fleet is not None:
            self.fleet.stop()
        if self.receiver is not None:
            self.receiver.stop()
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.server.pid, signal.SIGKILL)
                self.server.wait()
        if self.db is not None:
            self.db.dispose()


class V2Demo(BecknV2Enrollment, Demo):
    """`derflex demo --beckn 2.0`: the customers enrolled over Beckn v2.0.0 (server.cli.demo_v2)."""


ENVELOPE_LIMIT_KW = 1.5  # per site, the example ("export ≤ 1.5 kW per site on feeder-7")


class EnvelopeDemo(Demo):
    """`derflex demo --envelopes`: a feeder's export envelope (programs.envelopes). Rooftop PV
    homes whose local time is noon (the simulated sun is up whatever the clock says) behind
    feeder-7; the utility's "Solar soak" program asks every site to export at most 1.5 kW during
    the window and pays per kWh of export curtailed against the baseline; the scheduler publishes
    one DERControl per device with csipaus:opModExpLimW; the inverters cut their output; the
    picture shows each site's mirrored export held under the limit, and settlement pays."""

    def start_fleet(self) -> None:
        from der_sim.agent import AgentConfig
        from der_sim.fleet import Fleet, certificates, make_devices, progress_printer
        from server.bootstrap import tls_files
        from server.pki import DevPKI

        progress = progress_printer()
        # the window opens a minute or two from now: make that local noon for every home
        noon = int(12 * 3600 - (time.time() + 120) % 86_400)
        devices = make_devices(self.n, seed=self.seed, mix={"pv": 1.0}, prefix="home", tz_offset_s=noon)
        creds = certificates(DevPKI(self.settings.certs_dir), devices, progress)
        config = AgentConfig(poll_rate=10, post_rate=20, interval_s=10, time_sync_s=60, pin=None)
        tls = tls_files(self.settings)
        self.fleet = Fleet(devices, creds, "127.0.0.1", self.port, tls.trust, config=config,
                           seed=self.seed, workers=min(16, max(2, self.n // 4)))
        stored = self.fleet.backfill(HISTORY_DAYS, 900, progress=progress)
        _say(f"  {stored:,} history readings stored (15-minute averages, {HISTORY_DAYS} days per home)")
        self.fleet.start()
        up = self.fleet.wait_registered(90, progress)
        if up < self.n:
            raise DemoError(f"derflex demo: only {up} of {self.n} devices registered and reported "
                            f"(phases {self.fleet.phases()}); server log: {self.log}")
        sizes = Counter(int(d.params.nameplate_w) for d in devices)
        _say("  rooftop PV, local noon: " + ", ".join(f"{v} × {k / 1000:g} kW" for k, v in sorted(sizes.items())))

    def author(self) -> None:
        from server.services.flex import grid_nodes, programs as flex

        now = datetime.now(timezone.utc)
        start = (now + timedelta(seconds=self.lead + 15)).replace(second=0, microsecond=0) + timedelta(minutes=1)
        end = start + timedelta(minutes=self.minutes)
        program = {
            "name": "Solar soak", "currency": "AUD", "description": "Solar soak feeder-7",
            "window": {"weekdays": list(range(7)), "start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"),
                       "tz": "UTC"},
            "price_cap": 0.5, "incentive": {"kind": "fixed", "rate_per_kwh": 0.08}, "eligible_kinds": ["pv"],
            "lead_time_s": self.lead, "grid_node_ids": ["feeder-7"],
            "envelope": {"export_limit_kw": ENVELOPE_LIMIT_KW},
            "measurement": {"interval_s": 60, "delay_s": 25, "resettle_days": 1,
                            "baseline": {"x": 5, "y": 5, "min_days": 3, "lookback_days": 10, "day_types": "any"}},
        }
        t = int(time.time())
        with self.db.transaction() as s:
            grid_nodes.put_grid_node(s, {"name": "substation-1", "adder_per_percent": 0.0}, t)
            grid_nodes.put_grid_node(s, {"name": "feeder-7", "parent": "substation-1", "adder_per_percent": 0.0}, t)
            made = flex.create_program(s, program, t)
        self.program_id, self.start, self.end = made["id"], int(start.timestamp()), int(end.timestamp())
        self.key = start.date().isoformat()
        local = lambda d: d.astimezone().strftime("%H:%M")  # noqa: E731
        _say(f"  program {made['id']} \"Solar soak\": export ≤ {ENVELOPE_LIMIT_KW:g} kW per site on feeder-7 from "
             f"{local(start)} to {local(end)} (local time), A$0.08 per kWh curtailed against the baseline, "
             f"published {self.lead} s ahead")

    def enroll(self) -> None:
        from server.services.flex import enrollments

        t = int(time.time())
        with self.db.transaction() as s:
            for i, d in enumerate(self.fleet.devices):
                enrollments.enroll(s, self.program_id, {"lfdi": d.agent.lfdi, "customer": f"Home {i + 1}",
                                                         "kind": "pv", "grid_node": "feeder-7"}, t)
        _say(f"  {self.n} homes enrolled behind feeder-7")

    def run_window(self) -> None:
        from server.db import flex as store

        def state() -> str | None:
            with self.db.transaction() as s:
                w = store.window(s, self.program_id, self.key)
                return w.state if w is not None and w.state in ("published", "republished", "missed") else None

        wait = self.start - self.lead - time.time()
        _say(f"  the scheduler publishes in {max(0, wait):.0f} s …")
        got = _wait(state, max(0, wait) + 60, "the window to be published", self.log, poll=1.0)
        if got == "missed":
            raise DemoError(f"derflex demo: the window was missed (not published before it ended); log {self.log}")
        _say(f"  published: one DERControl per home with csipaus:opModExpLimW = {ENVELOPE_LIMIT_KW * 1000:g} W")
        self._countdown(self.start - time.time(), "window opens in")
        _say(f"  window runs for {self.minutes} min: inverters hold their export under the envelope …")
        self._countdown(self.end - time.time(), "window ends in")

    def settle(self) -> dict[str, Any]:
        from server.db import flex as store
        from server.db import settlement as records
        from server.services.flex import envelopes, reports as settlement_reports

        def settled() -> Any:
            with self.db.transaction() as s:
                w = store.window(s, self.program_id, self.key)
                run = records.current_run(s, w.id) if w is not None else None
                return None if run is None else run.version

        _say("  waiting for the last readings and the settlement (25 s delay for late readings) …")
        _wait(settled, 25 + 120, "the settlement", self.log, poll=1.0)
        with self.db.transaction() as s:
            report = settlement_reports.window_report(s, self.program_id, self.key, limit=1000)
            self.export = envelopes.window_export(s, self.program_id, self.key, margin_s=240)
            png = envelopes.window_export_png(s, self.program_id, self.key, tz=datetime.now().astimezone().tzinfo,
                                              margin_s=240)
        self.plot.parent.mkdir(parents=True, exist_ok=True)
        self.plot.write_bytes(png)
        return report

    def summary(self, report: dict[str, Any]) -> None:
        s_ = report.get("summary", report)
        e = self.export
        click.secho("\nSummary", bold=True)
        inside = [k for k, t in enumerate(e["times"]) if e["start"] <= t < e["end"]]
        before = [k for k, t in enumerate(e["times"]) if t + 10 <= e["start"]]
        held = [x for row in e["export_kw"] for k, x in enumerate(row) if k in inside and x is not None]
        prior = [x for row in e["export_kw"] for k, x in enumerate(row) if k in before and x is not None]
        over = sum(1 for x in held if x > e["limit_kw"] + 1e-3)
        _say(f"  export per site before the window: up to {max(prior, default=0):.2f} kW "
             f"(mean {sum(prior) / max(1, len(prior)):.2f} kW)")
        _say(f"  during the window: up to {max(held, default=0):.2f} kW; {len(held) - over} of {len(held)} "
             f"10-second readings at or under {e['limit_kw']:g} kW")
        env = s_.get("envelope") or {}
        paid = sum(f["amount_minor"] for f in s_["flows"]) / 100
        _say(f"  settlement: {env.get('curtailed_kwh', 0):.2f} kWh of export curtailed against the baseline "
             f"(of {env.get('required_kwh', 0):.2f} kWh the envelope required), {env.get('excess_kwh', 0):.3f} kWh "
             f"outside it; A${paid:.2f} paid to {s_['devices']} homes")
        fleet = self.fleet.summary()
        _say(f"  2030.5 traffic: {fleet['requests']:,} requests, {fleet['failed_requests']} failed")
        _say(f"  picture: {self.plot}")
        if over:
            raise DemoError(f"derflex demo: {over} readings in the window exported more than the envelope")


def _envelope_demo(n: int, window_minutes: int, lead_seconds: int, home: Path, plot: Path, seed: int,
                   keep: bool) -> None:
    """`derflex demo --envelopes` (EnvelopeDemo), stopped cleanly whatever happens."""
    started = time.monotonic()
    if plot == Path("demo-delivery.png"):
        plot = Path("demo-envelope.png")
    d = EnvelopeDemo(home.resolve(), n, window_minutes, plot.resolve(), seed, lead_s=lead_seconds)
    stopped = False

    def interrupted(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        _step(1, f"preparing a fresh home in {d.home}")
        d.prepare()
        _step(2, "starting the server (derflex serve)")
        d.start_server()
        _step(3, f"{n} rooftop PV homes register over mutual TLS and post their history")
        d.start_fleet()
        _step(4, "the utility authors \"Solar soak\": an export envelope on feeder-7")
        d.author()
        _step(5, f"{n} homes are enrolled")
        d.enroll()
        _step(6, "the scheduler publishes the envelope; the inverters follow it")
        d.run_window()
        _step(7, "measurement, verification and settlement")
        report = d.settle()
        _step(8, "done")
        d.summary(report)
        if keep:
            d.keep_running()
    except KeyboardInterrupt:
        stopped = True
        click.echo("\nderflex demo: interrupted; shutting down", err=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        d.close()
    if stopped:
        raise SystemExit(130)
    click.echo(f"derflex demo: finished in {math.ceil(time.monotonic() - started)} s; the server is stopped "
               f"(its data stays in {d.home})")


@click.command("demo")
@click.option("--devices", "n", type=click.IntRange(1, 2000), default=50, show_default=True,
              help="How many simulated customers, each with one device.")
@click.option("--window-minutes", type=click.IntRange(1, 30), default=2, show_default=True,
              help="Length of the peak window (time is compressed: a real one lasts hours).")
@click.option("--lead-seconds", type=click.IntRange(15, 600), default=45, show_default=True,
              help="How long before the window the scheduler publishes its controls. Devices poll every "
                   "10 s, so 15 s still reaches each of them before the start; the end-to-end test uses 20.")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=Path("var/demo"),
              show_default=True, help="Folder for the demo's server: new, empty, or one an earlier demo made "
                                      "(which is emptied first).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=Path("demo-delivery.png"),
              show_default=True, help="Where to write the picture of requested vs delivered.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the simulated fleet.")
@click.option("--notify", is_flag=True, help="Drive the fleet by 2030.5 notifications instead of polling: the "
                                             "devices subscribe and one receiver serves them all.")
@click.option("--envelopes", is_flag=True, help="A feeder's export envelope instead: rooftop PV homes at local noon, "
                                                "a 1.5 kW per site export limit (CSIP-AUS opModExpLimW) published by "
                                                "the scheduler, and a picture of export held under it.")
@click.option("--keep", is_flag=True, help="After the summary, leave the server, its dashboard and the devices "
                                           "running until Ctrl-C, to click through the window that just ran.")
@click.option("--beckn", "beckn_version", type=click.Choice(["1.1", "2.0"]), default="1.1", show_default=True,
              help="The Beckn version the BAP enrolls the customers in: 1.1 (v1.1.0 orders) or 2.0 (v2.0.0 LTS "
                   "contracts with block bids, the DEG demand-flexibility devkits' flow; server.cli.demo_v2).")
def demo(n: int, window_minutes: int, lead_seconds: int, home: Path, plot: Path, seed: int, notify: bool,
         envelopes: bool, keep: bool, beckn_version: str) -> None:
    """Run the whole product end to end on the embedded default (SQLite, dev PKI, one machine).

    Starts a fresh server, simulates --devices homes talking IEEE 2030.5 over mutual TLS, authors a
    "Peak Saver" program, enrolls every customer through the Beckn facade, lets the scheduler clear
    and publish a short peak window, measures and settles it, and prints what happened with a
    picture. Takes about five minutes; Ctrl-C stops it cleanly. The dashboard's URL and a login are
    printed when the server starts; --keep leaves everything running afterwards.
    """
    if envelopes:
        return _envelope_demo(n, window_minutes, lead_seconds, home, plot, seed, keep)
    started = time.monotonic()
    kind = V2Demo if beckn_version == "2.0" else Demo
    d = kind(home.resolve(), n, window_minutes, plot.resolve(), seed, lead_s=lead_seconds, notify=notify)
    stopped = False

    def interrupted(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        _step(1, f"preparing a fresh home in {d.home}")
        d.prepare()
        _step(2, "starting the server (derflex serve)")
        d.start_server()
        _step(3, f"{n} simulated devices register over mutual TLS and post their history"
                 + (" (driven by notifications)" if notify else ""))
        d.start_fleet()
        _step(4, "the utility authors the \"Peak Saver\" program")
        d.author()
        _step(5, d.enroll_label.format(n=n))
        d.enroll()
        _step(6, "the scheduler clears the market and publishes; devices act")
        d.run_window()
        _step(7, "measurement, verification and settlement")
        report = d.settle()
        _step(8, "done")
        d.summary(report)
        if keep:
            d.keep_running()
    except KeyboardInterrupt:
        stopped = True
        click.echo("\nderflex demo: interrupted; shutting down", err=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        d.close()
    if stopped:
        raise SystemExit(130)
    click.echo(f"derflex demo: finished in {math.ceil(time.monotonic() - started)} s; the server is stopped "
               f"(its data stays in {d.home})")
