"""`derflex pki …`: make and inspect the development certificates for IEEE 2030.5 mutual TLS."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.pki import (
    DevPKI,
    certificate_kind,
    certificate_policies,
    check_ca_certificate,
    check_device_certificate,
    check_server_certificate,
    hardware_module_name,
    validate_name,
)
from server.pki.devpki import DEFAULT_HOSTNAMES, issued_by
from server.pki.profile import policy_name
from server.sep2.identity import lfdi_from_cert_der, sfdi_from_lfdi

_DIR_HELP = (
    "Folder of the dev PKI. Default: $DERFLEX_PKI_DIR if set, else $DERFLEX_HOME/certs, else ./certs."
)


def default_pki_dir() -> Path:
    """$DERFLEX_PKI_DIR, else <$DERFLEX_HOME or the current folder>/certs."""
    explicit = os.environ.get("DERFLEX_PKI_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("DERFLEX_HOME") or Path.cwd()) / "certs"


def _dir_option(func):  # type: ignore[no-untyped-def]
    return click.option(
        "--dir",
        "pki_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        metavar="PATH",
        help=_DIR_HELP,
    )(func)


@contextlib.contextmanager
def _friendly_errors() -> Iterator[None]:
    """Turn the library's errors into one-line messages instead of tracebacks."""
    try:
        yield
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


def _snapshot(pki: DevPKI) -> dict[Path, tuple[int, int] | None]:
    paths = [
        pki.serca_path,
        pki.serca_key_path,
        pki.mica_path,
        pki.mica_key_path,
        pki.trust_path,
        pki.server_cert_path,
        pki.server_key_path,
    ]
    out: dict[Path, tuple[int, int] | None] = {}
    for path in paths:
        try:
            st = path.stat()
            out[path] = (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            out[path] = None
    return out


def _ensure(pki: DevPKI, hosts: tuple[str, ...] = ()) -> bool:
    """Run DevPKI.ensure() and say what it wrote, if anything."""
    wanted = list(DEFAULT_HOSTNAMES) + [h for h in hosts if h not in DEFAULT_HOSTNAMES]
    before = _snapshot(pki)
    created = pki.ensure(wanted)
    if created:
        after = _snapshot(pki)
        written = [p.name for p, state in after.items() if state != before[p]]
        click.echo(f"Created in {pki.root}: {', '.join(written)}")
    return created


def _pki(pki_dir: Path | None) -> DevPKI:
    return DevPKI(pki_dir if pki_dir is not None else default_pki_dir())


def _kind(aggregator: bool, operator: bool) -> str:
    if aggregator and operator:
        raise click.UsageError("choose at most one of --aggregator and --operator")
    return "aggregator" if aggregator else "operator" if operator else "device"


@click.group(
    "pki",
    help=(
        "Development certificates for IEEE 2030.5 mutual TLS.\n\n"
        "2030.5 clients and servers prove who they are with certificates from a chain "
        "SERCA (root) -> MICA (issuing CA) -> device. These commands make such a chain for "
        "development and tests, a server certificate, and client credentials (certificate + "
        "private key) for devices, aggregators and operators. A client's identity on the server is "
        "its LFDI/SFDI, computed from its certificate. Never use this material in production."
    ),
)
def pki() -> None:
    pass


@pki.command(
    "init",
    help=(
        "Create the dev CA and the server certificate, if they do not exist yet.\n\n"
        "Writes serca.pem (root), mica.pem (issuing CA), trust.pem (both: what the server trusts "
        "client certificates with, and clients the server), server.pem/server.key (the TLS server's "
        "credential, valid for localhost and 127.0.0.1 plus any --host). Running it again changes "
        "nothing, except that a new --host re-issues the server certificate with that name added."
    ),
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="NAME",
    help="Another DNS name or IP address the server is reached by (repeatable).",
)
@_dir_option
def init_cmd(hosts: tuple[str, ...], pki_dir: Path | None) -> None:
    pki_ = _pki(pki_dir)
    with _friendly_errors():
        if not _ensure(pki_, hosts):
            click.echo(f"The dev PKI in {pki_.root} already exists; nothing created.")
    click.echo(f"Trust anchors (SERCA + MICA): {pki_.trust_path}")
    click.echo(f"Server certificate and key:  {pki_.server_cert_path}, {pki_.server_key_path}")


_KIND_FLAGS = [
    click.option(
        "--aggregator",
        is_flag=True,
        help="An aggregator credential (manages many EndDevices; carries the 2030.5 "
        "service-provider policy 1.3.6.1.4.1.40732.2.3).",
    ),
    click.option("--operator", is_flag=True, help="An operator credential (acts for the utility)."),
]


def _kind_flags(func):  # type: ignore[no-untyped-def]
    for option in reversed(_KIND_FLAGS):
        func = option(func)
    return func


@pki.command(
    "device",
    help=(
        "Issue a client credential named NAME (a device unless --aggregator or --operator).\n\n"
        "Writes <dir>/devices/NAME.pem (certificate followed by the MICA, ready for TLS) and "
        "NAME.key (private key, readable only by you), and prints the LFDI and SFDI the server "
        "will know the client by. NAME: letters, digits, '-', '_' and '.'."
    ),
)
@click.argument("name")
@_kind_flags
@click.option("--overwrite", is_flag=True, help="Replace an existing credential of that name.")
@_dir_option
def device_cmd(
    name: str, aggregator: bool, operator: bool, overwrite: bool, pki_dir: Path | None
) -> None:
    kind = _kind(aggregator, operator)
    pki_ = _pki(pki_dir)
    with _friendly_errors():
        validate_name(name)
        _ensure(pki_)
        cred = pki_.issue(name, kind, overwrite=overwrite)
    click.echo(f"Issued {kind} credential {name!r}")
    click.echo(f"  certificate: {cred.cert_path}")
    click.echo(f"  private key: {cred.key_path}")
    click.echo(f"LFDI: {cred.lfdi}")
    click.echo(f"SFDI: {cred.sfdi}")


def _next_index(folder: Path, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.pem$")
    highest = 0
    if folder.is_dir():
        for entry in os.scandir(folder):
            match = pattern.match(entry.name)
            if match:
                highest = max(highest, int(match.group(1)))
    return highest + 1


@pki.command(
    "bulk",
    help=(
        "Issue COUNT credentials at once, named <prefix>00001, <prefix>00002, …\n\n"
        "Numbering continues after the highest existing number with that prefix, so running "
        "`bulk 100` twice gives 200 credentials. Useful for simulated fleets."
    ),
)
@click.argument("count", type=click.IntRange(min=1, max=1_000_000))
@click.option("--prefix", default="dev-", show_default=True, help="Start of every name.")
@_kind_flags
@_dir_option
def bulk_cmd(count: int, prefix: str, aggregator: bool, operator: bool, pki_dir: Path | None) -> None:
    kind = _kind(aggregator, operator)
    pki_ = _pki(pki_dir)
    try:
        validate_name(prefix + "0")
    except ValueError:
        raise click.BadParameter("use letters, digits, '-', '_' or '.'", param_hint="--prefix") from None
    with _friendly_errors():
        _ensure(pki_)
        start = _next_index(pki_.root / f"{kind}s", prefix)
        names = [f"{prefix}{i:05d}" for i in range(start, start + count)]
        began = time.perf_counter()
        with click.progressbar(length=count, label=f"Issuing {kind} credentials") as bar:
            done = 0

            def progress(i: int, _total: int) -> None:
                nonlocal done
                bar.update(i - done)
                done = i

            creds = pki_.issue_many(names, kind, progress=progress)
        seconds = time.perf_counter() - began
    click.echo(
        f"Issued {len(creds)} {kind} credential(s) {names[0]} … {names[-1]} in {seconds:.2f} s "
        f"into {pki_.root / f'{kind}s'}"
    )


def _resolve(file: Path, pki_: DevPKI) -> Path:
    if file.is_file():
        return file
    if not file.is_absolute() and (pki_.root / file).is_file():
        return pki_.root / file
    raise click.ClickException(f"no such file: {file}")


def _load_any(path: Path) -> list[x509.Certificate]:
    data = path.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def _time(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


@pki.command(
    "show",
    help=(
        "Show a certificate's identity and check it against the 2030.5 profile.\n\n"
        "FILE is a PEM or DER certificate (with a chain, the first one is shown); a relative path "
        "is also looked up in the PKI folder, so `show devices/dev-00001.pem` works. Prints the "
        "LFDI and SFDI, subject, issuer, expiry, policies and hardwareModuleName, whether this dev "
        "PKI issued it, and what departs from the 2030.5 certificate profile."
    ),
)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_dir_option
def show_cmd(file: Path, pki_dir: Path | None) -> None:
    pki_ = _pki(pki_dir)
    path = _resolve(file, pki_)
    with _friendly_errors():
        try:
            certs = _load_any(path)
        except ValueError:
            raise click.ClickException(f"{path} is not a PEM or DER X.509 certificate") from None
        cert = certs[0]
        kind = certificate_kind(cert)
        lfdi = lfdi_from_cert_der(cert.public_bytes(serialization.Encoding.DER))
        try:
            hw = hardware_module_name(cert)
        except ValueError as exc:
            hw, hw_error = None, str(exc)
        else:
            hw_error = None

        click.echo(
            f"File:       {path}"
            + (f" ({len(certs)} certificates; the first is shown)" if len(certs) > 1 else "")
        )
        click.echo(f"Kind:       {kind}")
        click.echo(f"LFDI:       {lfdi}")
        click.echo(f"SFDI:       {sfdi_from_lfdi(lfdi)}")
        click.echo(f"Subject:    {cert.subject.rfc4514_string() or '(empty)'}")
        click.echo(f"Issuer:     {cert.issuer.rfc4514_string() or '(empty)'}")
        click.echo(f"notBefore:  {_time(cert.not_valid_before_utc)}")
        click.echo(f"notAfter:   {_time(cert.not_valid_after_utc)}")
        policies = certificate_policies(cert)
        click.echo(f"Policies:   {', '.join(policy_name(p) for p in policies) or '(none)'}")
        if hw is not None:
            printable = hw.hw_serial and all(0x20 < b < 0x7F for b in hw.hw_serial)
            serial = hw.hw_serial.decode("ascii") if printable else hw.hw_serial.hex().upper()
            click.echo(f"Hardware:   hwType {hw.hw_type.dotted_string}, hwSerialNum {serial}")
        elif hw_error:
            click.echo(f"Hardware:   malformed hardwareModuleName ({hw_error})")

        if pki_.mica_path.is_file() and pki_.serca_path.is_file():
            anchors = [
                x509.load_pem_x509_certificate(p.read_bytes()) for p in (pki_.mica_path, pki_.serca_path)
            ]
            issued = any(issued_by(cert, ca) for ca in anchors)
            click.echo(
                f"Dev PKI:    {'issued by' if issued else 'NOT issued by'} the dev CA in {pki_.root}"
            )

        if kind == "ca":
            problems = check_ca_certificate(cert, root=cert.issuer == cert.subject)
            label = "CA"
        elif kind == "server":
            problems = check_server_certificate(cert)
            label = "server"
        else:
            problems = check_device_certificate(cert)
            label = "device (client)"
    if problems:
        click.echo(
            f"Profile:    {len(problems)} departure(s) from the 2030.5 {label} certificate profile:"
        )
        for problem in problems:
            click.echo(f"  - {problem}")
    else:
        click.echo(f"Profile:    conforms to the 2030.5 {label} certificate profile")
