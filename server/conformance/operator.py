"""cactus-client's admin instructions carried out through derflex's admin API.

The harness describes the server state a step needs ("ensure-end-device", "create-der-control",
…; cactus_test_definitions/server/admin_instructions.py has the list and parameters). `Operator`
does each one with admin API calls, the way an operator would by hand:

    ensure-end-device        POST /devices (PIN; an aggregator's DER under its aggregator LFDI);
                             registered=false: DELETE /devices/{id}
    ensure-fsa               POST /fsas (an operator FunctionSetAssignments, by its annotation)
                             or POST /fsas/{f}/devices
    ensure-der-program       POST /der-programs (its primacy), POST /fsas/{f}/der-programs
    ensure-der-control-list  the same, and with subscribable=true the DERControlList's own
                             `subscribable` attribute, read over 2030.5 with the client's certificate
    create-der-control       POST /der-programs/{p}/events for the client's device
    create-default-der-control  PUT /der-programs/{p}/default-control
    clear-der-controls       POST /events/{mrid}/cancel for its scheduled and active events
    set-poll-rate            PUT /poll-rates/{resource}
    set-post-rate            PUT /devices/{id}/post-rate
    set-client-access        granted=false: POST /revoked-clients {lfdi} (the client certificate's
                             LFDI); granted=true: DELETE /revoked-clients/{lfdi} if revoked here
    ensure-mup-list-empty    (true of a fresh server: the driver starts one per procedure)

The aggregator is named in setup (POST /aggregators), which also registers its certificate's own
EndDevice: the one whose SubscriptionListLink the harness subscribes through.

DER programs reach a device only through operator FSAs (never as program members), so the
device's membership FSA (number 1) stays unlisted and the FSAs the device lists are exactly the
procedure's, in the order it made them.

What derflex cannot do raises `Unsupported`, naming what is missing; what derflex refuses raises
`AdminRefused` with its answer, which names the field. Either way the harness fails that step at
once with the message, instead of waiting for a state that will never come.

Controls are sent as the admin API's JSON, keyed by their 2030.5 names: watts as ActivePower
objects {"value", "multiplier"} (the csipaus limits opModExpLimW, opModImpLimW, opModGenLimW,
opModLoadLimW), booleans for opModConnect / opModEnergize, integers for opModFixedW and rampTms;
setGradW beside them for a DefaultDERControl.

Timing choices where the harness leaves them open: an "active" control starts 1 s ago and lasts
`ACTIVE_SECONDS` (two made in the same second supersede in the order they were made: derflex's
mRIDs increase with creation time); "scheduled" controls without an offset start
`SCHEDULED_LEAD_SECONDS` from now, back to back per device, each `SCHEDULED_SECONDS` long.
"""

from __future__ import annotations

import re
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from server.conformance.admin_api import AdminApi, AdminRefused

ACTIVE_SECONDS = 300
SCHEDULED_LEAD_SECONDS = 30
SCHEDULED_SECONDS = 60
DEFAULT_PRIMACY = 1

# cactus-test-definitions' CSIPAusResource names → derflex's poll-rate families (services.sep2.devices)
POLL_RATE_FAMILIES: Mapping[str, str] = {
    "DeviceCapability": "dcap",
    "Time": "tm",
    "EndDeviceList": "edev",
    "EndDevice": "edev",
    "Registration": "rg",
    "DERList": "der",
    "FunctionSetAssignmentsList": "fsa",
    "DERProgramList": "derp",
    "ResponseSetList": "rsps",
    "MirrorUsagePointList": "mup",
    "UsagePointList": "upt",
}
WATT_MODES = ("opModExpLimW", "opModImpLimW", "opModGenLimW", "opModLoadLimW")


class Unsupported(Exception):
    """An instruction derflex has no admin operation for (yet); the message names what is missing."""


@dataclass(frozen=True)
class Client:
    """One of the harness's virtual clients, as its configuration describes it."""

    alias: str
    kind: str  # "device" or "aggregator"
    lfdi: str  # the EndDevice it registers (an aggregator: the DER it manages, not its own LFDI)
    cert_lfdi: str  # its certificate's LFDI (an aggregator's own identity)
    pin: int
    max_watts: int
    cert_file: str | None = None
    key_file: str | None = None


def active_power(watts: float) -> dict[str, int]:
    """Watts as a 2030.5 ActivePower: an Int16 value and a power-of-ten multiplier, exact when it can
    be (2500 → 2500 × 10^0, 100000 → 10000 × 10^1, 1234.5 → 12345 × 10^-1)."""
    for multiplier in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -1, -2, -3):
        value = watts / 10**multiplier
        if abs(value - round(value)) < 1e-9 and -32768 <= round(value) <= 32767:
            return {"value": int(round(value)), "multiplier": multiplier}
    for multiplier in range(0, 10):  # no exact form: the nearest that fits
        if -32768 <= round(watts / 10**multiplier) <= 32767:
            return {"value": int(round(watts / 10**multiplier)), "multiplier": multiplier}
    raise ValueError(f"{watts} W does not fit an ActivePower")


def control_json(params: Mapping[str, Any]) -> dict[str, Any]:
    """The admin API's control object for an instruction's control parameters."""
    control: dict[str, Any] = {}
    for key in WATT_MODES:
        if params.get(key) is not None:
            control[key] = active_power(float(params[key]))
    for key in ("opModConnect", "opModEnergize"):
        if params.get(key) is not None:
            control[key] = bool(params[key])
    if params.get("opModFixedW") is not None:
        control["opModFixedW"] = int(round(float(params["opModFixedW"])))
    if params.get("rampTms") is not None:
        control["rampTms"] = int(params["rampTms"])
    return control


class Operator:
    """Carries out one procedure's admin instructions; keeps what it made (programs, FSAs) by the
    names the procedure gives them. One per harness run."""

    def __init__(self, api: AdminApi, *, fresh_server: bool, now: Callable[[], float] = time.time):
        self.api = api
        self.fresh_server = fresh_server
        self.now = now
        self._device_ids: dict[str, int] = {}  # LFDI (upper case) → EndDevice id
        self._fsas: dict[str, int] = {}  # annotation → operator FSA id
        self._fsa_devices: dict[int, set[int]] = {}  # FSA → the devices assigned it
        self._fsa_programs: dict[int, list[int]] = {}  # FSA → its DER programs, in the order assigned
        self._device_fsas: dict[int, list[str]] = {}  # device → annotations of its FSAs, in order
        self._program_by_annotation: dict[str, int] = {}
        self._program_by_primacy: dict[int, int] = {}
        self._device_programs: dict[int, list[int]] = {}  # device → programs it reaches, in order
        self._revoked: set[str] = set()  # certificate LFDIs this run revoked
        self._scheduled_until: dict[int, int] = {}  # device → end of its last stacked scheduled control

    # ---------------------------------------------------------------------------- run lifecycle

    def setup(self, clients: Iterable[Client]) -> list[str]:
        """Name every aggregator client's certificate LFDI as an aggregator (derflex gives a
        certificate aggregator scope only when an operator named it)."""
        done = []
        for client in clients:
            if client.kind == "aggregator":
                try:
                    self.api.post("/aggregators", {"lfdi": client.cert_lfdi, "name": client.alias[:100]})
                except AdminRefused as exc:
                    if exc.status != 409:
                        raise
                done.append(f"aggregator {client.cert_lfdi} named {client.alias!r}")
        return done

    def apply(self, kind: str, params: Mapping[str, Any], client: Client) -> str:
        """Carry out one instruction; returns what was done, for the log."""
        handler = {
            "ensure-end-device": self.ensure_end_device,
            "ensure-mup-list-empty": self.ensure_mup_list_empty,
            "ensure-fsa": self.ensure_fsa,
            "ensure-der-program": self.ensure_der_program,
            "ensure-der-control-list": self.ensure_der_control_list,
            "create-der-control": self.create_der_control,
            "create-default-der-control": self.create_default_der_control,
            "clear-der-controls": self.clear_der_controls,
            "set-poll-rate": self.set_poll_rate,
            "set-post-rate": self.set_post_rate,
            "set-client-access": self.set_client_access,
        }.get(kind)
        if handler is None:
            raise Unsupported(f"admin instruction {kind!r} is unknown to derflex's conformance plugin")
        return handler(dict(params), client)

    # ------------------------------------------------------------------------------ devices

    def find_device(self, lfdi: str) -> dict[str, Any] | None:
        """The admin API's view of the EndDevice with this LFDI, or None."""
        wanted, start = lfdi.upper(), 0
        while True:
            page = self.api.query("/devices", start=start, limit=1000)
            for device in page["devices"]:
                if device["lfdi"].upper() == wanted:
                    self._device_ids[wanted] = device["id"]
                    return device
            start += len(page["devices"])
            if not page["devices"] or start >= page["all"]:
                return None

    def device_id(self, client: Client) -> int:
        known = self._device_ids.get(client.lfdi.upper())
        if known is not None:
            return known
        device = self.find_device(client.lfdi)
        if device is None:
            raise RuntimeError(
                f"no EndDevice with LFDI {client.lfdi} ({client.alias}) is registered: "
                "the procedure's ensure-end-device should have come first"
            )
        return int(device["id"])

    def ensure_end_device(self, params: dict[str, Any], client: Client) -> str:
        kind = params.get("client_type") or client.kind
        device = self.find_device(client.lfdi)
        if params["registered"]:
            if device is None:
                body: dict[str, Any] = {"lfdi": client.lfdi, "pin": client.pin, "label": client.alias[:100]}
                if kind == "aggregator":
                    body["aggregator_lfdi"] = client.cert_lfdi
                device = self.api.post("/devices", body)
                self._device_ids[client.lfdi.upper()] = device["id"]
                return f"registered EndDevice {device['id']} ({client.lfdi}, PIN {client.pin})"
            if params.get("has_registration_link") and not device.get("has_pin"):
                raise Unsupported(
                    f"EndDevice {device['id']} has no PIN, and derflex's admin API cannot give an existing "
                    "device one (its RegistrationLink needs a PIN)"
                )
            return f"EndDevice {device['id']} ({client.lfdi}) already registered"
        if device is None:
            return f"no EndDevice with LFDI {client.lfdi}, as asked"
        self.api.delete(f"/devices/{device['id']}")
        self._forget_device(int(device["id"]), client.lfdi)
        return f"removed EndDevice {device['id']} ({client.lfdi}), as asked"

    def _forget_device(self, device: int, lfdi: str) -> None:
        """Drop what this run knew of a removed device (its id may be given to the next one)."""
        self._device_ids.pop(lfdi.upper(), None)
        for followers in self._fsa_devices.values():
            followers.discard(device)
        for known in (self._device_fsas, self._device_programs, self._scheduled_until):
            known.pop(device, None)

    def ensure_mup_list_empty(self, params: dict[str, Any], client: Client) -> str:
        if self.fresh_server:
            return "fresh server for this procedure: no MirrorUsagePoint exists before the procedure makes one"
        raise Unsupported(
            "derflex's admin API can neither list nor remove MirrorUsagePoints; run each procedure on a "
            "fresh server (the driver does)"
        )

    def set_client_access(self, params: dict[str, Any], client: Client) -> str:
        lfdi = client.cert_lfdi.upper()
        if params["granted"]:
            if lfdi not in self._revoked:
                return f"{client.alias}: access granted (every certificate of the trust chain has it)"
            self.api.delete(f"/revoked-clients/{lfdi}")
            self._revoked.discard(lfdi)
            return f"{client.alias}: access restored (DELETE /revoked-clients/{lfdi})"
        self.api.post("/revoked-clients", {"lfdi": lfdi, "reason": f"cactus set-client-access ({client.alias})"})
        self._revoked.add(lfdi)
        return f"{client.alias}: access revoked (certificate LFDI {lfdi})"

    # ------------------------------------------------------------------- FSAs and DER programs

    def ensure_fsa(self, params: dict[str, Any], client: Client) -> str:
        device = self.device_id(client)
        annotation = params.get("annotation") or "fsa"
        fsa = self._fsa(device, annotation)
        return f"EndDevice {device} is assigned FunctionSetAssignments {fsa} ({annotation!r})"

    def _fsa(self, device: int, annotation: str) -> int:
        """The operator FSA of this annotation (made on first use), assigned to the device."""
        fsa = self._fsas.get(annotation)
        if fsa is None:
            view = self.api.post("/fsas", {"description": annotation[:32], "device_ids": [device]})
            fsa = self._fsas[annotation] = int(view["id"])
            self._fsa_devices[fsa], self._fsa_programs[fsa] = {device}, []
        elif device not in self._fsa_devices[fsa]:
            self.api.post(f"/fsas/{fsa}/devices", {"device_ids": [device]})
            self._fsa_devices[fsa].add(device)
            for program in self._fsa_programs[fsa]:
                self._reaches(device, program)
        annotations = self._device_fsas.setdefault(device, [])
        if annotation not in annotations:
            annotations.append(annotation)
        return fsa

    def _reaches(self, device: int, program: int) -> None:
        programs = self._device_programs.setdefault(device, [])
        if program not in programs:
            programs.append(program)

    def _assign(self, fsa: int, program: int) -> None:
        """The DER program in the FSA (so every device assigned the FSA reaches it)."""
        if program not in self._fsa_programs[fsa]:
            self.api.post(f"/fsas/{fsa}/der-programs", {"der_program_ids": [program]})
            self._fsa_programs[fsa].append(program)
            for device in self._fsa_devices[fsa]:
                self._reaches(device, program)

    def ensure_der_program(self, params: dict[str, Any], client: Client) -> str:
        device = self.device_id(client)
        annotation = params.get("fsa_annotation") or (self._device_fsas.get(device) or ["fsa"])[-1]
        fsa = self._fsa(device, annotation)
        program = self._program_by_annotation.get(annotation)
        if program is None:
            program = self._program(params.get("primacy", DEFAULT_PRIMACY), annotation)
            self._program_by_annotation[annotation] = program
        self._assign(fsa, program)
        return f"EndDevice {device} reaches DER program {program} through FunctionSetAssignments {fsa}"

    def _program(self, primacy: int, label: str) -> int:
        """The DER program of this primacy made for this run (made on first use)."""
        program = self._program_by_primacy.get(primacy)
        if program is None:
            view = self.api.post("/der-programs", {"primacy": primacy, "description": f"cactus {label}"[:32]})
            program = self._program_by_primacy[primacy] = int(view["id"])
        return program

    def _program_for(self, device: int, primacy: int | None) -> int:
        """The program a control goes to: the one of that primacy, else the device's latest, else a
        new one of the default primacy; the device reaches it (through its latest FSA)."""
        if primacy is not None:
            program = self._program(primacy, f"primacy {primacy}")
        elif self._device_programs.get(device):
            return self._device_programs[device][-1]
        else:
            program = self._program(DEFAULT_PRIMACY, f"primacy {DEFAULT_PRIMACY}")
        if program not in self._device_programs.get(device, []):
            annotation = (self._device_fsas.get(device) or ["fsa"])[-1]
            self._assign(self._fsa(device, annotation), program)
        return program

    def ensure_der_control_list(self, params: dict[str, Any], client: Client) -> str:
        device = self.device_id(client)
        program = self._program_for(device, None)
        done = f"EndDevice {device} sees DER program {program}'s DERControlList"
        if params.get("subscribable"):
            href = f"/edev/{device}/derp/{program}/derc"
            value = self._subscribable(client, href)
            if value not in (1, 3):
                raise Unsupported(
                    f"{href} has subscribable={value}: it must accept non-conditional subscriptions "
                    "(1 or 3)"
                )
            done += f", subscribable={value}"
        return done

    def _subscribable(self, client: Client, href: str) -> int | None:
        """The `subscribable` attribute of a 2030.5 resource, read with the client's own certificate."""
        parts = urllib.parse.urlsplit(self.api.base_url)
        ctx = ssl.create_default_context(cafile=self.api.ca_file)
        ctx.set_ciphers("ECDHE-ECDSA-AES128-CCM8:ECDHE-ECDSA-AES128-GCM-SHA256")
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = False
        if client.cert_file:
            ctx.load_cert_chain(client.cert_file, client.key_file)
        req = urllib.request.Request(
            f"{parts.scheme}://{parts.netloc}{href}", headers={"Accept": "application/sep+xml"}
        )
        with urllib.request.urlopen(req, timeout=self.api.timeout, context=ctx) as resp:
            body = resp.read(65536).decode(errors="replace")
        root = re.search(r"<(?:\w+:)?DERControlList\b[^>]*>", body)
        found = re.search(r'\ssubscribable="(\d+)"', root.group(0)) if root else None
        return int(found.group(1)) if found else None

    # -------------------------------------------------------------------------------- controls

    def create_der_control(self, params: dict[str, Any], client: Client) -> str:
        device = self.device_id(client)
        program = self._program_for(device, params.get("primacy"))
        now = int(self.now())
        status = params["status"]
        offset = params.get("start_offset_seconds")
        if status == "active":
            duration = int(params.get("duration_seconds") or ACTIVE_SECONDS)
            start = now - (int(offset) if offset is not None else 1)
        elif status == "scheduled":
            duration = int(params.get("duration_seconds") or SCHEDULED_SECONDS)
            if offset is not None:
                start = now + int(offset)
            else:
                start = max(now + SCHEDULED_LEAD_SECONDS, self._scheduled_until.get(device, 0) + 1)
            self._scheduled_until[device] = max(self._scheduled_until.get(device, 0), start + duration)
        else:
            raise ValueError(f"create-der-control status must be 'active' or 'scheduled', not {status!r}")
        body: dict[str, Any] = {
            "start": start, "duration": duration, "control": control_json(params), "device_ids": [device],
        }
        if params.get("randomizeStart_seconds") is not None:
            body["randomize_start"] = int(params["randomizeStart_seconds"])
        events = self.api.post(f"/der-programs/{program}/events", body)["events"]
        return f"event {events[0]['mrid']} in DER program {program} for EndDevice {device}: {body}"

    def create_default_der_control(self, params: dict[str, Any], client: Client) -> str:
        device = self.device_id(client)
        program = self._program_for(device, params.get("primacy"))
        control = control_json(params)
        if params.get("setGradW") is not None:
            control["setGradW"] = int(params["setGradW"])
        self.api.put(f"/der-programs/{program}/default-control", control)
        return f"DefaultDERControl of DER program {program}: {control}"

    def clear_der_controls(self, params: dict[str, Any], client: Client) -> str:
        device = self.device_id(client)
        now = int(self.now())
        live = []
        for program in self._device_programs.get(device, []):
            for event in self.api.query(f"/der-programs/{program}/events", limit=1000)["events"]:
                if event["device_id"] in (None, device) and event["cancelled_at"] is None and not event["ended"]:
                    live.append(event)
        if not params.get("all"):
            live = sorted(live, key=lambda e: (e["creation_time"], e["start"]))[-1:]
        for event in live:
            self.api.post(f"/events/{event['mrid']}/cancel", {})
        return f"cancelled {len(live)} event(s) of EndDevice {device} at {now}"

    # ----------------------------------------------------------------------------------- rates

    def set_poll_rate(self, params: dict[str, Any], client: Client) -> str:
        resource = str(params["resource"])
        family = POLL_RATE_FAMILIES.get(resource)
        if family is None:
            raise Unsupported(f"derflex's admin API has no poll rate for {resource}")
        self.api.put(f"/poll-rates/{family}", {"seconds": int(params["rate_seconds"])})
        return f"pollRate of {family} ({resource}) = {params['rate_seconds']} s"

    def set_post_rate(self, params: dict[str, Any], client: Client) -> str:
        resource = str(params["resource"])
        if resource not in ("MirrorUsagePoint", "MirrorUsagePointList"):
            raise Unsupported(f"derflex's admin API sets postRate per EndDevice's usage points, not for {resource}")
        device = self.device_id(client)
        self.api.put(f"/devices/{device}/post-rate", {"seconds": int(params["rate_seconds"])})
        return f"postRate of EndDevice {device}'s usage points = {params['rate_seconds']} s"
