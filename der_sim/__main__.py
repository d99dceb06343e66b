"""`python -m der_sim`: run simulated 2030.5 devices against a server, alone or by the thousand.

    python -m der_sim fleet --server 127.0.0.1:8443 --pki certs --devices 500 --minutes 10

Certificates come from a dev PKI folder (the server's `certs/`, or one made with `derflex pki
init`): devices named `{prefix}-{i}` reuse the certificate they had, the others are issued in one
pass. Progress is shown while they start; Ctrl-C (or the end of --minutes) stops them and prints a
summary: devices by phase, requests, failures, latency percentiles and what the devices did.

    python -m der_sim fleet --server 127.0.0.1:8443 --pki certs --devices 500 --notify

With --notify the devices subscribe and take their controls from notifications instead of polling
(polling only every --notify-poll-factor × pollRate as a safety net): one HTTPS receiver
(der_sim.notifications) on --notify-listen serves the whole fleet, one path per device, with the
dev PKI's server certificate (the server must allow its address: DERFLEX_NOTIFICATION_ALLOW=loopback
for 127.0.0.1). The summary adds the notifications received and what polling would have cost.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import click


def _kinds(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in text.split(","):
        name, _, share = part.partition("=")
        try:
            out[name.strip()] = float(share) if share else 1.0
        except ValueError:
            raise click.BadParameter(f"{part!r}: use kind=share, e.g. battery=0.5,load=0.5") from None
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main() -> None:
    """DER simulator: smart inverters, batteries, EV chargers and loads speaking IEEE 2030.5."""


@main.command("fleet")
@click.option("--server", "address", default="127.0.0.1:8443", show_default=True, help="The 2030.5 server, host:port.")
@click.option("--pki", "pki_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("certs"),
              show_default=True, help="Dev PKI folder: device certificates are issued there, trust.pem is used.")
@click.option("--devices", "n", type=click.IntRange(1, 100_000), default=10, show_default=True)
@click.option("--mix", default="battery=0.4,load=0.35,ev_charger=0.15,pv=0.1", show_default=True,
              help="Device kinds and their shares.")
@click.option("--prefix", default="sim", show_default=True, help="Device names are PREFIX-0, PREFIX-1, …")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same fleet.")
@click.option("--poll-rate", type=click.FloatRange(min=1), help="Seconds between polls (default: the server's pollRate).")
@click.option("--post-rate", type=click.FloatRange(min=1), help="Seconds between reports (default: the server's postRate).")
@click.option("--interval", "interval_s", type=click.IntRange(1, 3600), default=60, show_default=True,
              help="Metering interval in seconds.")
@click.option("--backfill-days", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Post this many days of history first (15-minute readings), for baselines.")
@click.option("--minutes", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Stop after this long (0: run until Ctrl-C).")
@click.option("--threads", type=click.IntRange(1, 256), default=16, show_default=True, help="Threads driving the devices.")
@click.option("--notify", is_flag=True,
              help="Subscribe and act on notifications; poll only every --notify-poll-factor × pollRate.")
@click.option("--notify-listen", default="127.0.0.1:0", show_default=True,
              help="host:port of the fleet's notification receiver (port 0: any free port).")
@click.option("--notify-poll-factor", type=click.FloatRange(min=1), default=10.0, show_default=True,
              help="With --notify, walk the programs every this × pollRate as a safety net.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def fleet(address: str, pki_dir: Path, n: int, mix: str, prefix: str, seed: int, poll_rate: float | None,
          post_rate: float | None, interval_s: int, backfill_days: float, minutes: float, threads: int,
          notify: bool, notify_listen: str, notify_poll_factor: float, as_json: bool) -> None:
    """Run N simulated devices against a 2030.5 server until Ctrl-C or --minutes."""
    from der_sim.agent import AgentConfig
    from der_sim.fleet import Fleet, certificates, make_devices, progress_printer
    from der_sim.notifications import NotificationReceiver
    from server.pki import DevPKI

    host, _, port_text = address.rpartition(":")
    if not host or not port_text.isdigit():
        raise click.BadParameter(f"{address!r}: use host:port, e.g. 127.0.0.1:8443", param_hint="--server")
    receiver = None
    if notify:
        listen_host, _, listen_port = notify_listen.rpartition(":")
        if not listen_host or not listen_port.isdigit() or int(listen_port) > 65535:
            raise click.BadParameter(f"{notify_listen!r}: use host:port, e.g. 127.0.0.1:0", param_hint="--notify-listen")
    pki = DevPKI(pki_dir)
    if not pki.exists():
        raise click.ClickException(f"no dev PKI in {pki_dir}: point --pki at the server's certs/ folder "
                                   "(or make one with `derflex pki init`)")
    try:
        devices = make_devices(n, seed=seed, mix=_kinds(mix), prefix=prefix)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--mix") from None
    progress = progress_printer()
    creds = certificates(pki, devices, progress)
    config = AgentConfig(poll_rate=poll_rate, post_rate=post_rate, interval_s=interval_s, notify=notify,
                         notify_poll_factor=notify_poll_factor)
    if notify:
        receiver = NotificationReceiver(pki.server_cert_path, pki.server_key_path, pki.trust_path,
                                        host=listen_host.strip("[]"), port=int(listen_port))
    sim = Fleet(devices, creds, host, int(port_text), pki.trust_path, config=config, workers=threads, seed=seed,
                receiver=receiver)
    stop = {"now": False}

    def interrupted(_sig: int, _frame: Any) -> None:
        stop["now"] = True

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        if backfill_days:
            stored = sim.backfill(backfill_days, 900, progress=progress)
            click.echo(f"  {stored:,} history readings posted", err=True)
        try:
            sim.start()
        except OSError as exc:
            raise click.ClickException(f"cannot listen for notifications on {notify_listen}: {exc}") from None
        if receiver is not None:
            click.echo(f"der_sim: notifications to {receiver.base_url}<LFDI>", err=True)
        up = sim.wait_registered(120, progress)
        click.echo(f"der_sim: {up} of {n} devices running against {address}"
                   + (f" for {minutes:g} min" if minutes else "; Ctrl-C to stop"), err=True)
        end = time.monotonic() + minutes * 60 if minutes else None
        while not stop["now"] and (end is None or time.monotonic() < end):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sim.stop()
    summary = sim.summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
        return
    lat = summary["latency"]
    click.echo(f"devices: {summary['devices']} ({', '.join(f'{v} {k}' for k, v in sorted(summary['phases'].items()))})")
    click.echo(f"requests: {summary['requests']:,}, failed {summary['failed_requests']}, "
               f"by status {dict(sorted(summary['by_status'].items()))}")
    if lat:
        click.echo(f"latency: p50 {lat['p50_ms']} ms, p90 {lat['p90_ms']} ms, p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms")
    c = summary["counters"]
    click.echo(f"did: {c.get('polls', 0):,} polls, {c.get('reports', 0):,} DER reports, {c.get('readings_posted', 0):,} "
               f"readings, {c.get('responses_posted', 0):,} responses; {c.get('failures', 0)} failed cycles")
    if "notifications" in summary:
        got = summary["notifications"]
        click.echo(f"notifications: {got.get('received', 0):,} received over {got.get('connections', 0)} connection(s), "
                   f"{c.get('subscriptions', 0):,} subscriptions ({c.get('subscriptions_refused', 0)} refused); "
                   f"{summary['requests']:,} requests vs ≈ {summary['polling_estimate']:,} polling every pollRate")


if __name__ == "__main__":
    main()
