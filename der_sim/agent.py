"""One simulated 2030.5 device (`DeviceAgent`): a device model, an event engine and a client.

Made for fleets: nothing here owns a thread. `run_due(now)` does whatever is due at
`now` (the caller's clock, e.g. time.time()) and returns when it next needs to run; one thread can
drive thousands of agents by calling each at the time it asked for. An agent's calls are
serialised by its own lock, so agents may also be spread over threads (`run_due` does not wait
for the lock: it asks to be called back a moment later). Only `backfill` sleeps (between retries).

What a run does (IEEE 2030.5 / CSIP), in this order:
1. Steps the model from its last time to now under the control in force, splitting the steps at
   metering-interval boundaries and keeping each completed interval's average metered import
   (server clock, aligned to the interval: interval start = k × interval_s); at each second an
   event starts or ends on the device (the engine's `next_change`) it ticks the engine, so
   controls switch exactly then, whenever the caller comes.
2. If a cycle is due (poll, post or time sync) and it is not backing off: walks from `/dcap`, the
   one well-known URI; every other href comes from the documents of this same walk (nothing is
   kept from one cycle to the next; the server caches what devices poll):
   - `/tm` at its pollRate: the offset between the caller's clock and the server's (events and
     readings use the server's time; a disagreement within config `clock_tolerance_s` is left
     alone: the server's clock has whole seconds, and a caller's `now` may be a moment old);
   - finds its EndDevice in the EndDeviceList by LFDI, or registers in band (POST with its LFDI
     and SFDI); if the EndDevice has a RegistrationLink, checks the PIN (config `pin`) and on a
     mismatch goes no further (`phase` "refused", `problem` says why) until a later cycle finds it
     right;
   - PUTs DERCapability, DERSettings, DERStatus and DERAvailability after (re)registering;
   - polls FunctionSetAssignments → DERProgramList → each program's DERControlList and
     DefaultDERControl at the pollRate the server gives (the smallest of DeviceCapability,
     EndDeviceList, FunctionSetAssignmentsList and DERProgramList; config `poll_rate` overrides)
     and feeds them to the engine; a program no longer listed is observed empty (its events are
     cancelled, its default dropped);
   - every postRate (the EndDevice's, else config `default_post_rate`; config `post_rate`
     overrides): PUTs DERStatus and DERAvailability and posts the completed intervals' readings
     to its MirrorUsagePoint (found in the `/mup` list by its mRID, POSTed when absent).
3. Ticks the engine at the server's time: applies the control it gives from now on and POSTs the
   Responses it returns to each event's replyTo.

Notification mode (config `notify`, and a `notification_uri` given by the fleet, e.g. a path of
der_sim.notifications.NotificationReceiver): during each walk the device subscribes (POST
/edev/{id}/sub) to every document it polls for controls — its FunctionSetAssignmentsList, each
FSA's DERProgramList, each program's DERControlList and DefaultDERControl — before it reads it,
so no change falls between the read and the subscription; it reads its SubscriptionList once per
walk, re-subscribes what the server no longer holds for this URI and deletes what it no longer
reads. It then walks again only every `notify_poll_factor` × pollRate (a safety net) and takes
the rest from notifications: `deliver` (any thread) queues one and asks the fleet to run the
agent now (`wake_hook`); the run feeds a DERControlList or DefaultDERControl to the engine as a
poll would (a list longer than the notification's limit is read whole), and a changed
FSA or DERProgramList, or a subscription the server ended (status 1, 2 or 4), makes it walk at
once. A subscription the server refuses puts the device back to polling at its pollRate.
Known limit: a notification rendered before a walk's read but delivered after it is applied after
it (the documents carry no version); the server lists events until they end, so only an event
created in between could be taken for removed.

Failures: an error on the way (no answer, 429, 5xx, an answer it cannot read) ends the cycle and
backs off exponentially with jitter (Retry-After honoured); a refusal of something the device sent
(4xx on a PUT, a reading post or a Response) is counted, logged and dropped, and the cycle goes
on. Nothing raised by the server's answers escapes `run_due`.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from der_sim import reports
from der_sim.client import BadAnswer, ClientError, Sep2Client, Sep2Error, Stats, with_query
from der_sim.devices import Control, Model, backfill, metered_import_w
from der_sim.engine import EventEngine
from server.sep2.der import DER, DERList
from server.sep2.derp import DefaultDERControl, DERControl, DERControlList, DERProgramList
from server.sep2.fsa import FunctionSetAssignmentsList
from server.sep2.models import DeviceCapability, EndDevice, EndDeviceList, Registration, Time
from server.sep2.mup import MirrorUsagePointList
from server.sep2.rsps import DERControlResponse
from server.sep2.sub import STATUS_DEFAULT, Notification, Subscription, SubscriptionList

__all__ = ["AgentConfig", "AgentCounters", "DeviceAgent", "DCAP"]

log = logging.getLogger(__name__)

DCAP = "/dcap"  # the entry point every 2030.5 client is configured with; all else is linked
PAGE = 100  # entries asked for per list page
MAX_PAGES = 100  # a list longer than PAGE × MAX_PAGES is read that far
DAY_S = 86_400
BUSY_RETRY_S = 0.5  # when run_due finds the agent busy in another thread


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """How a simulated device behaves where the standard leaves it to the device."""

    pin: int | None = 111115  # the Registration PIN it expects (server/bootstrap.py's demo PIN)
    poll_rate: float | None = None  # seconds; overrides the server's pollRate (compressed time)
    post_rate: float | None = None  # seconds; overrides the server's postRate
    default_poll_rate: float = 900.0  # when the server gives none (2030.5 default)
    default_post_rate: float = 300.0
    time_sync_s: float | None = None  # /tm; default: its pollRate, else default_poll_rate
    clock_tolerance_s: float = 2.0  # a disagreement with /tm up to this is not corrected
    interval_s: int = 60  # metering interval
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    readings_per_post: int = 2000  # at most this many readings per POST (halved on 413)
    max_pending_readings: int = 7 * 1440  # the oldest are dropped beyond this (a long outage)
    notify: bool = False  # subscribe and act on notifications (needs the agent's notification_uri)
    notify_poll_factor: float = 10.0  # in notification mode, walk every this × pollRate (safety net)

    def __post_init__(self) -> None:
        if not isinstance(self.interval_s, int) or self.interval_s <= 0:
            raise ValueError(f"interval_s must be a positive whole number of seconds, got {self.interval_s!r}")
        for name in ("poll_rate", "post_rate", "time_sync_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if not self.clock_tolerance_s >= 0:
            raise ValueError(f"clock_tolerance_s must not be negative, got {self.clock_tolerance_s!r}")
        if self.readings_per_post < 1 or self.max_pending_readings < 1:
            raise ValueError("readings_per_post and max_pending_readings must be at least 1")
        if not self.notify_poll_factor >= 1:
            raise ValueError(f"notify_poll_factor must be at least 1, got {self.notify_poll_factor!r}")


@dataclass(slots=True)
class AgentCounters:
    """What an agent did, for fleets and benchmarks."""

    cycles: int = 0
    polls: int = 0
    registrations: int = 0
    reports: int = 0  # DER documents PUT
    readings_posted: int = 0
    readings_dropped: int = 0
    responses_posted: int = 0
    responses_dropped: int = 0
    refusals: int = 0  # 4xx answers to what the device sent
    failures: int = 0  # cycles ended by an error (then backed off)
    consecutive_failures: int = 0
    notifications: int = 0  # notifications applied
    subscriptions: int = 0  # subscriptions POSTed (new or renewed)
    subscriptions_refused: int = 0
    control_list_gets: int = 0  # DERControlList pages read (walks and long notifications)
    # requests by purpose, for comparing notification mode with polling (Fleet.summary)
    cycle_requests: int = 0  # /dcap and the EndDeviceList, once per cycle
    poll_requests: int = 0  # the walk: FSAs, DERProgramLists, DERControlLists, DefaultDERControls
    sub_requests: int = 0  # SubscriptionList reads, subscription POSTs and DELETEs


def _shape(items: list[Any]) -> tuple[Any, ...]:
    """What of an FSA or DERProgram list decides the walk: each entry's identity, primacy and links."""
    return tuple((getattr(i, "href", None), getattr(i, "mrid", None), getattr(i, "primacy", None),
                  getattr(getattr(i, "der_program_list_link", None), "href", None),
                  getattr(getattr(i, "der_control_list_link", None), "href", None),
                  getattr(i, "default_der_control_link", None)) for i in items)


class _Stop(Exception):
    """End this cycle without an error (refused or waiting for registration)."""


class DeviceAgent:
    """A simulated device speaking 2030.5 through `client`; see the module docstring."""

    def __init__(self, client: Sep2Client, *, lfdi: str, sfdi: int, model: Model, params: Any,
                 rng: random.Random, config: AgentConfig | None = None, name: str | None = None) -> None:
        self.client = client
        self.lfdi = lfdi.upper()
        self.sfdi = sfdi
        self.model = model
        self.params = params
        self.rng = rng
        self.config = config or AgentConfig()
        self.name = name or self.lfdi[:8]
        self.engine = EventEngine(rng, supports=model.supports)
        self.counters = AgentCounters()
        self.phase = "starting"  # → "running"; "waiting" (not registered), "refused" (PIN, identity)
        self.problem: str | None = None  # why it is not running
        self.last_error: str | None = None
        self.offset = 0.0  # server clock − caller's clock, seconds
        self.state: Any = None  # the model's state
        self.control: Control | None = None  # what it follows now
        self.series_start: int | None = None  # start of its first metering interval
        self.poll_rate = self.config.poll_rate or self.config.default_poll_rate
        self.post_rate = self.config.post_rate or self.config.default_post_rate
        self._lock = threading.Lock()
        self._began = time.monotonic()  # when the current run began (measures /tm's moment)
        self._jitter = random.Random(f"{self.lfdi}:jitter")
        self._k = 0  # index of the metering interval being accumulated
        self._energy = 0.0  # W·s of metered import in it so far
        self._pending: list[tuple[int, float]] = []  # completed intervals not posted yet
        self._outbox: deque[tuple[str, DERControlResponse]] = deque()
        self._programs: dict[str, int] = {}  # mRID → primacy, as last polled
        self._next_poll = -math.inf  # server times
        self._next_post = -math.inf
        self._next_tm = -math.inf
        self._next_attempt = -math.inf
        self._verified: str | None = None  # the EndDevice href whose registration was checked
        self._reported: str | None = None  # the EndDevice href whose DER documents were PUT
        self._typed: set[str] = set()  # usage points this agent posted its ReadingType to
        self._chunk = self.config.readings_per_post
        self.notification_uri: str | None = None  # where the server notifies this device (notify mode)
        self.wake_hook: Callable[[], None] | None = None  # asks the driver to run the agent now
        self.running_since: float | None = None  # caller's clock, the first time it was running
        self._inbox: deque[tuple[Notification, Any]] = deque()  # delivered, not applied yet
        self._subs: dict[str, tuple[str, str]] = {}  # subscribed resource → (its href, its notificationURI)
        self._watch_kind: dict[str, str] = {}  # subscribed href → "fsa" | "derp" | "derc" | "dderc"
        self._wanted: set[str] = set()  # what this walk subscribed to
        self._derc_of: dict[str, str] = {}  # DERControlList href → program mRID
        self._dderc_of: dict[str, str] = {}  # DefaultDERControl href → program mRID
        self._docs: dict[str, tuple[int, list[DERControl], DefaultDERControl | None]] = {}  # as last seen
        self._unsubscribed = False  # a subscription was refused: poll at the pollRate
        self._shapes: dict[str, tuple[Any, ...]] = {}  # FSA / DERProgram list href → what the walk saw

    @classmethod
    def over_tls(cls, credential: Any, host: str, port: int, trust_path: Any, *, model: Model, params: Any,
                 rng: random.Random, config: AgentConfig | None = None, stats: Stats | None = None,
                 timeout: float = 10.0) -> DeviceAgent:
        """An agent with its own TLS connection, from a credential (server.pki.Credential)."""
        client = Sep2Client.over_tls(host, port, credential.cert_path, credential.key_path, trust_path,
                                     timeout=timeout, stats=stats)
        return cls(client, lfdi=credential.lfdi, sfdi=credential.sfdi, model=model, params=params, rng=rng,
                   config=config, name=getattr(credential, "name", None))

    @property
    def stats(self) -> Stats:
        return self.client.stats

    @property
    def pending_readings(self) -> int:
        return len(self._pending)

    @property
    def notifying(self) -> bool:
        """Whether this agent subscribes and takes its controls from notifications."""
        return self.config.notify and self.notification_uri is not None

    def deliver(self, notification: Notification, resource: Any) -> None:
        """Queue a notification for this agent (any thread; it is applied by the next run) and ask
        the driver, through `wake_hook`, to run the agent now."""
        self._inbox.append((notification, resource))
        if self.wake_hook is not None:
            self.wake_hook()

    def close(self) -> None:
        with self._lock:
            self.client.close()

    def server_time(self, now: float) -> float:
        """The server's clock at the caller's `now`."""
        return now + self.offset

    # ------------------------------------------------------------------------------- the loop

    def run_due(self, now: float) -> float:
        """Do what is due at `now` (caller's clock); return when to run next (same clock).

        `now` should be read just before the call: an agent takes it for the present (a fleet that
        reads its clock once for a long round of agents delays the later ones' events). While
        another thread is inside the agent (a `backfill`), it returns at once and asks to be
        called again in BUSY_RETRY_S, so a fleet's loop never waits for one device."""
        if not self._lock.acquire(blocking=False):
            return now + BUSY_RETRY_S
        try:
            return self._run(now)
        except Exception as exc:  # a bad answer must never stop a fleet's loop
            log.exception("%s: unexpected error", self.name)
            self._failed(self.server_time(now), exc)
            return self._wake(now)
        finally:
            self._lock.release()

    def _run(self, now: float) -> float:
        self._began = time.monotonic()
        t = self.server_time(now)
        self._catch_up(t)
        if t >= self._next_attempt:
            try:
                if self._inbox:
                    self._take_notifications(t)
                if t >= min(self._next_poll, self._next_post, self._next_tm):
                    self._cycle(now)
                self._tick(self.server_time(now))
                self._flush(self.server_time(now))
            except ClientError as exc:
                self._failed(self.server_time(now), exc)
            else:
                self.counters.consecutive_failures = 0
        self._tick(self.server_time(now))
        return self._wake(now)

    def _wake(self, now: float) -> float:
        t = self.server_time(now)
        network = min(self._next_poll, self._next_post, self._next_tm,
                      t if self._outbox or self._inbox else math.inf)
        wake = max(network, self._next_attempt)
        change = self.engine.next_change(self._whole(t))
        if change is not None:
            wake = min(wake, change)
        wake = min(max(wake, t + 0.001), t + 3600.0)
        return wake - self.offset

    @staticmethod
    def _whole(t: float) -> int:
        """Whole server seconds (a wake-up computed for second n may land a hair before it)."""
        return math.floor(t + 1e-6)

    def _failed(self, t: float, exc: BaseException) -> None:
        c = self.counters
        c.failures += 1
        c.consecutive_failures += 1
        delay = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** min(c.consecutive_failures - 1, 30))
        delay *= 0.5 + 0.5 * self._jitter.random()
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            delay = max(delay, retry_after)
        self._next_attempt = t + delay
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.warning("%s: %s; next try in %.1f s", self.name, self.last_error, delay)

    # ---------------------------------------------------------------------------------- model

    def _advance(self, t: float) -> None:
        """Step the model to server time t, one metering interval at most per step."""
        size = self.config.interval_s
        if self.state is None:
            self._k = math.floor(t / size)
            self.series_start = self._k * size
            self.state = self.model.initial(self.params, float(self.series_start), self.rng)
        while t - self.state.time > 1e-6:
            a = self.state.time
            end = (self._k + 1) * size
            b = min(t, end)
            if b - a > 1e-9:
                self.state = self.model.step(self.params, self.state, self.control, a, b - a, self.rng)
                self._energy += metered_import_w(self.state) * (b - a)
            if b >= end - 1e-9:
                self._pending.append((self._k * size, self._energy / size))
                self._k += 1
                self._energy = 0.0
        excess = len(self._pending) - self.config.max_pending_readings
        if excess > 0:
            del self._pending[:excess]
            self.counters.readings_dropped += excess

    def _catch_up(self, t: float) -> None:
        """Step the model to t, switching controls at the exact seconds events start and end."""
        if self.state is None:
            self._advance(t)
        while True:
            change = self.engine.next_change(self._whole(self.state.time))
            if change is None or change > t:
                break
            self._advance(change)
            self._tick(change)
        self._advance(t)

    def _tick(self, t: float) -> None:
        now = self._whole(t)
        tick = self.engine.tick(now)
        self.control = tick.control
        for r in tick.responses:
            self._outbox.append((r.reply_to, DERControlResponse(
                created_date_time=now, end_device_lfdi=self.lfdi, status=r.status, subject=r.subject)))

    # ---------------------------------------------------------------------------------- cycle

    def _cycle(self, now: float) -> None:
        self.counters.cycles += 1
        t = self.server_time(now)
        before = self.client.requests
        dcap = self.client.get(DCAP, DeviceCapability)
        self.counters.cycle_requests += 1
        if t >= self._next_tm and dcap.time_link:
            t = self._sync_time(dcap.time_link, now)
        try:
            before = self.client.requests
            edev, rates = self._registered(dcap, t)
        except _Stop:
            self._next_poll = self._next_post = t + self.poll_rate
            return
        finally:
            self.counters.cycle_requests += self.client.requests - before
        self.phase, self.problem = "running", None
        if self.running_since is None:
            self.running_since = now
        if self._reported != edev.href:
            self._report(edev, t, everything=True)
            self._reported = edev.href
            self._next_post = max(self._next_post, t + self._post_rate(edev))
        if t >= self._next_poll:
            before, subs_before = self.client.requests, self.counters.sub_requests
            try:
                rates += self._poll(edev, t)
            finally:
                sub = self.counters.sub_requests - subs_before
                self.counters.poll_requests += self.client.requests - before - sub
            self.poll_rate = self.config.poll_rate or min((r for r in rates if r), default=self.config.default_poll_rate)
            factor = self.config.notify_poll_factor if self.notifying and not self._unsubscribed else 1.0
            self._next_poll = t + self.poll_rate * factor
        if t >= self._next_post:
            self._report(edev, t, everything=False)
            self._post_readings(dcap, t)
            self._next_post = t + self._post_rate(edev)

    def _post_rate(self, edev: EndDevice) -> float:
        self.post_rate = self.config.post_rate or edev.post_rate or self.config.default_post_rate
        return self.post_rate

    def _sync_time(self, href: str, now: float) -> float:
        tm = self.client.get(href, Time)
        # The caller's clock when the answer came; the server's had whole seconds (+0.5 on average).
        local = now + (time.monotonic() - self._began)
        skew = tm.current_time + 0.5 - (local + self.offset)
        if abs(skew) > self.config.clock_tolerance_s:
            self.offset = tm.current_time + 0.5 - local
            log.info("%s: server clock offset %.1f s", self.name, self.offset)
        t = self.server_time(now)
        self._next_tm = t + (self.config.time_sync_s or tm.poll_rate or self.config.default_poll_rate)
        return t

    def _pages(self, href: str, model: type, items: str) -> tuple[Any, list[Any]]:
        """Every entry of a list (the first page's document, the entries)."""
        first, out = None, []
        for _ in range(MAX_PAGES):
            doc = self.client.get(with_query(href, s=len(out), l=PAGE), model)
            first = doc if first is None else first
            got = getattr(doc, items)
            out.extend(got)
            if not got or len(out) >= doc.all:
                break
        return first, out

    # ------------------------------------------------------------------------- registration

    def _registered(self, dcap: DeviceCapability, t: float) -> tuple[EndDevice, list[int | None]]:
        """This device's EndDevice (registering in band if absent, PIN checked) and the pollRates
        seen on the way; _Stop when it may not go on."""
        if dcap.end_device_list_link is None:
            raise BadAnswer("DeviceCapability has no EndDeviceListLink")
        listing, devices = self._pages(dcap.end_device_list_link.href, EndDeviceList, "end_devices")
        edev = next((d for d in devices if (d.lfdi or "").upper() == self.lfdi), None)
        if edev is None:
            edev = self._register(dcap.end_device_list_link.href, t)
        if edev.href is None:
            raise BadAnswer("the EndDevice has no href")
        if self._verified != edev.href:
            self._check_pin(edev)
            self._verified = edev.href
        return edev, [dcap.poll_rate, listing.poll_rate]

    def _register(self, href: str, t: float) -> EndDevice:
        posted = EndDevice(lfdi=self.lfdi, sfdi=self.sfdi, changed_time=self._whole(t))
        try:
            location = self.client.post(href, posted)
        except Sep2Error as exc:
            if exc.status == 409 and exc.location:
                location = exc.location  # registered meanwhile (by us, or an operator)
            elif exc.status in (400, 403):  # 403: switched off on this server; 400: our identity refused
                self.phase = "waiting" if exc.status == 403 else "refused"
                self.problem = f"in-band registration refused ({exc}); waiting for an operator to register {self.lfdi}"
                log.warning("%s: %s", self.name, self.problem)
                raise _Stop from None
            else:
                raise
        if not location:
            raise BadAnswer(f"POST {href} answered without a Location")
        self.counters.registrations += 1
        log.info("%s: registered in band at %s", self.name, location)
        return self.client.get(location, EndDevice)

    def _check_pin(self, edev: EndDevice) -> None:
        if edev.registration_link is None or self.config.pin is None:
            return
        reg = self.client.get(edev.registration_link, Registration)
        if reg.pin != self.config.pin:
            self._verified = None
            self.phase = "refused"
            self.problem = (f"registration PIN mismatch: {edev.registration_link} says {reg.pin}, this device "
                            f"expects {self.config.pin}; not proceeding (is this the right server?)")
            log.error("%s: %s", self.name, self.problem)
            raise _Stop

    # -------------------------------------------------------------------------------- reports

    def _report(self, edev: EndDevice, t: float, *, everything: bool) -> None:
        """PUT the DER documents: all four, or DERStatus and DERAvailability."""
        if edev.der_list_link is None:
            return
        _, ders = self._pages(edev.der_list_link.href, DERList, "ders")
        if not ders:
            return
        der = ders[0]
        if der.der_status_link is None and der.href:
            der = self.client.get(der.href, DER)
        now, kind = self._whole(t), self.model.kind
        docs = [(der.der_status_link, reports.status(kind, self.params, self.state, now)),
                (der.der_availability_link, reports.availability(kind, self.params, self.state, now))]
        if everything:
            docs[:0] = [(der.der_capability_link, reports.capability(kind, self.params)),
                        (der.der_settings_link, reports.settings(kind, self.params, now))]
        for href, doc in docs:
            if href is None:
                continue
            try:
                self.client.put(href, doc)
                self.counters.reports += 1
            except Sep2Error as exc:
                if exc.retryable:
                    raise
                self._refused(exc)

    def _refused(self, exc: Sep2Error) -> None:
        self.counters.refusals += 1
        self.last_error = str(exc)
        log.warning("%s: the server refused %s", self.name, exc)

    # ---------------------------------------------------------------------------------- polls

    def _poll(self, edev: EndDevice, t: float) -> list[int | None]:
        """Read every program and its events, then feed the engine at once (a poll that fails
        half way feeds nothing, so no event is taken for removed)."""
        rates: list[int | None] = []
        found: dict[str, tuple[int, list[DERControl], DefaultDERControl | None]] = {}
        derc_of: dict[str, str] = {}
        dderc_of: dict[str, str] = {}
        shapes: dict[str, tuple[Any, ...]] = {}
        notifying = self.notifying
        if notifying:
            self._load_subscriptions(edev)
        if edev.function_set_assignments_list_link is not None:
            href = edev.function_set_assignments_list_link.href
            if notifying:
                self._watch(edev, href, "fsa")
            fsa_list, assignments = self._pages(href, FunctionSetAssignmentsList, "function_set_assignments")
            shapes[href] = _shape(assignments)
            rates.append(fsa_list.poll_rate)
            for fsa in assignments:
                if fsa.der_program_list_link is None:
                    continue
                if notifying:
                    self._watch(edev, fsa.der_program_list_link.href, "derp")
                plist, programs = self._pages(fsa.der_program_list_link.href, DERProgramList, "der_programs")
                shapes[fsa.der_program_list_link.href] = _shape(programs)
                rates.append(plist.poll_rate)
                for program in programs:
                    if program.mrid in found:
                        continue
                    controls: list[DERControl] = []
                    if program.der_control_list_link is not None:
                        href = program.der_control_list_link.href
                        derc_of[href] = program.mrid
                        if notifying:
                            self._watch(edev, href, "derc")
                        controls = self._controls(href)
                    default = None
                    if program.default_der_control_link:
                        dderc_of[program.default_der_control_link] = program.mrid
                        if notifying:
                            self._watch(edev, program.default_der_control_link, "dderc")
                        default = self._default(program.default_der_control_link)
                    found[program.mrid] = (program.primacy, controls, default)
        now = self._whole(t)
        for mrid, (primacy, controls, default) in found.items():
            self.engine.observe(mrid, primacy, controls, default, now)
        for mrid in set(self._programs) - set(found):
            self.engine.observe(mrid, self._programs[mrid], [], None, now)
        self._programs = {m: v[0] for m, v in found.items()}
        self._docs, self._derc_of, self._dderc_of, self._shapes = found, derc_of, dderc_of, shapes
        if notifying:
            self._unwatch_others(edev)
        self.counters.polls += 1
        return rates

    def _controls(self, href: str) -> list[DERControl]:
        """A whole DERControlList."""
        before = self.client.requests
        try:
            return self._pages(href, DERControlList, "der_controls")[1]
        finally:
            self.counters.control_list_gets += self.client.requests - before

    def _default(self, href: str) -> DefaultDERControl | None:
        try:
            return self.client.get(href, DefaultDERControl)
        except Sep2Error as exc:
            if exc.status != 404:
                raise
            return None

    # -------------------------------------------------------------------------- notifications

    def _load_subscriptions(self, edev: EndDevice) -> None:
        """What the server holds for this device (its own subscriptions), once per walk."""
        self._wanted = set()
        if edev.subscription_list_link is None:
            self._subs = {}
            return
        before = self.client.requests
        try:
            _, subs = self._pages(edev.subscription_list_link.href, SubscriptionList, "subscriptions")
        finally:
            self.counters.sub_requests += self.client.requests - before
        self._subs = {s.subscribed_resource: (s.href or "", s.notification_uri) for s in subs}
        self._unsubscribed = False

    def _watch(self, edev: EndDevice, href: str, kind: str) -> None:
        """Subscribe to `href` unless the server already notifies this device's URI of it."""
        self._wanted.add(href)
        self._watch_kind[href] = kind
        held = self._subs.get(href)
        if held is not None and held[1] == self.notification_uri:
            return
        if edev.subscription_list_link is None:
            self._unsubscribed = True
            return
        assert self.notification_uri is not None
        doc = Subscription(subscribed_resource=href, limit=PAGE, notification_uri=self.notification_uri)
        try:
            self.counters.sub_requests += 1
            location = self.client.post(edev.subscription_list_link.href, doc)
        except Sep2Error as exc:
            if exc.retryable:
                raise
            self.counters.subscriptions_refused += 1
            self._unsubscribed = True  # polled at the pollRate instead
            self._refused(exc)
            return
        self.counters.subscriptions += 1
        self._subs[href] = (location or "", self.notification_uri)

    def _unwatch_others(self, edev: EndDevice) -> None:
        """Delete this device's subscriptions to what it no longer reads (after a whole walk)."""
        for resource, (href, _) in list(self._subs.items()):
            if resource in self._wanted or not href:
                continue
            try:
                self.counters.sub_requests += 1
                self.client.delete(href)
            except Sep2Error as exc:
                if exc.retryable:
                    raise
                if exc.status != 404:
                    self._refused(exc)
            del self._subs[resource]
            self._watch_kind.pop(resource, None)

    def _take_notifications(self, t: float) -> None:
        """Apply the queued notifications in order (one that needs a request the server does not
        answer stays queued, and the run backs off)."""
        while self._inbox:
            note, resource = self._inbox[0]
            self._apply(note, resource, t)
            self._inbox.popleft()
            self.counters.notifications += 1

    def _apply(self, note: Notification, resource: Any, t: float) -> None:
        href = note.subscribed_resource
        if note.status != STATUS_DEFAULT or resource is None:
            # the server ended the subscription (cancelled, moved, deleted): find out what stands
            self._subs.pop(href, None)
            self._next_poll = min(self._next_poll, t)
            return
        now = self._whole(t)
        if href in self._derc_of and isinstance(resource, DERControlList):
            mrid = self._derc_of[href]
            controls = list(resource.der_controls)
            if resource.all > len(controls):  # longer than the subscription's limit: read it whole
                controls = self._controls(href)
            primacy, _, default = self._docs[mrid]
            self._docs[mrid] = (primacy, controls, default)
            self.engine.observe(mrid, primacy, controls, default, now)
        elif href in self._dderc_of and isinstance(resource, DefaultDERControl):
            mrid = self._dderc_of[href]
            primacy, controls, _ = self._docs[mrid]
            self._docs[mrid] = (primacy, controls, resource)
            self.engine.observe(mrid, primacy, controls, resource, now)
        elif self._watch_kind.get(href) in ("fsa", "derp"):
            items = getattr(resource, "function_set_assignments", None)
            if items is None:
                items = getattr(resource, "der_programs", None)
            whole = items is not None and getattr(resource, "all", 0) <= len(items)
            if not whole or _shape(items) != self._shapes.get(href):
                self._next_poll = min(self._next_poll, t)  # programs came, went or changed: walk now

    def _flush(self, t: float) -> None:
        """POST the queued Responses in order; a refused one is dropped."""
        while self._outbox:
            reply_to, response = self._outbox[0]
            try:
                self.client.post(reply_to, response)
                self.counters.responses_posted += 1
            except Sep2Error as exc:
                if exc.retryable:
                    raise
                self.counters.responses_dropped += 1
                self._refused(exc)
            self._outbox.popleft()

    # ------------------------------------------------------------------------------- metering

    def _usage_point(self, dcap: DeviceCapability) -> str:
        """The href of this device's MirrorUsagePoint: found by mRID, else created."""
        if dcap.mirror_usage_point_list_link is None:
            raise BadAnswer("DeviceCapability has no MirrorUsagePointListLink")
        mine = reports.mirror_usage_point(self.model.kind, self.lfdi)
        href = dcap.mirror_usage_point_list_link.href
        _, points = self._pages(href, MirrorUsagePointList, "mirror_usage_points")
        for p in points:
            if p.mrid == mine.mrid and p.device_lfdi.upper() == self.lfdi and p.href:
                return p.href
        location = self.client.post(href, mine)
        if not location:
            raise BadAnswer(f"POST {href} answered without a Location")
        self._typed.discard(location)
        log.info("%s: mirrors its meter at %s", self.name, location)
        return location

    def _post_readings(self, dcap: DeviceCapability, t: float) -> None:
        if not self._pending:
            return
        href = self._usage_point(dcap)
        now = self._whole(t)
        while self._pending:
            batch = self._pending[: self._chunk]
            if self._send(href, batch, self.config.interval_s, now, next_update=int(now + self.post_rate)):
                self.counters.readings_posted += len(batch)
            else:
                self.counters.readings_dropped += len(batch)
            del self._pending[: len(batch)]

    def _send(self, href: str, batch: list[tuple[int, float]], interval_s: int, now: int,
              next_update: int | None = None) -> bool:
        """POST one batch of readings; False when the server refused it (4xx)."""
        while True:
            typed = href in self._typed and interval_s == self.config.interval_s
            doc = reports.meter_reading(self.lfdi, interval_s, batch, with_type=not typed, now=now,
                                        next_update=next_update)
            try:
                self.client.post(href, doc)
            except Sep2Error as exc:
                if exc.status == 413 and len(batch) > 1:  # too large a body: halves, from now on
                    half = self._chunk = len(batch) // 2
                    first = self._send(href, batch[:half], interval_s, now, next_update)
                    second = self._send(href, batch[half:], interval_s, now, next_update)
                    return first and second
                if exc.retryable:
                    raise
                if typed:  # perhaps the server does not know our ReadingType: once more with it
                    self._typed.discard(href)
                    continue
                self._refused(exc)
                return False
            if interval_s == self.config.interval_s:
                self._typed.add(href)
            return True

    # ------------------------------------------------------------------------------- backfill

    def backfill(self, days: float, interval_s: int | None = None, *, now: float | None = None,
                 attempts: int = 5) -> int:
        """Post `days` of history without events (der_sim.devices.backfill) ending where the live
        readings begin (or at the current interval if the agent has not run yet), in chunks of
        `readings_per_post`. Blocking; registers first if needed. Retries a chunk on 429/5xx/no
        answer up to `attempts` times, sleeping as told (at most 30 s); raises ClientError when it
        gives up or when the device may not proceed. Returns the number of readings stored."""
        size = interval_s or self.config.interval_s
        if not isinstance(size, int) or size <= 0:
            raise ValueError(f"interval_s must be a positive whole number of seconds, got {size!r}")
        if not days > 0:
            raise ValueError(f"days must be positive, got {days!r}")
        with self._lock:
            now = time.time() if now is None else now
            self._began = time.monotonic()
            dcap, href, t = self._retrying(attempts, lambda: self._prepare_backfill(now))
            first = self.series_start if self.series_start is not None else self._whole(t)
            end = first // size * size
            count = int(days * DAY_S // size)
            start = end - count * size
            rng = random.Random(f"{self.lfdi}:backfill:{start}:{size}")
            history = [(int(s), w) for s, w in backfill(self.model, self.params, start, count * size / DAY_S + 1e-9,
                                                          size, rng) if s < end]
            stored, step = 0, self._chunk
            for i in range(0, len(history), step):
                batch = history[i: i + step]
                if self._retrying(attempts, lambda b=batch: self._send(href, b, size, self._whole(t))):
                    stored += len(batch)
            return stored

    def _prepare_backfill(self, now: float) -> tuple[DeviceCapability, str, float]:
        dcap = self.client.get(DCAP, DeviceCapability)
        t = self._sync_time(dcap.time_link, now) if dcap.time_link else self.server_time(now)
        try:
            self._registered(dcap, t)
        except _Stop:
            raise ClientError(self.problem or "this device may not proceed") from None
        return dcap, self._usage_point(dcap), t

    def _retrying(self, attempts: int, call: Any) -> Any:
        for attempt in range(1, attempts + 1):
            try:
                return call()
            except ClientError as exc:
                if not exc.retryable or attempt == attempts:
                    raise
                wait = exc.retry_after if exc.retry_after is not None else self.config.backoff_base_s * 2 ** (attempt - 1)
                time.sleep(min(30.0, wait))
        raise AssertionError("unreachable")  # pragma: no cover
