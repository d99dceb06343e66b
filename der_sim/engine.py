"""The device's side of the 2030.5 event lifecycle: which control to apply, which Responses to post.

Sans-IO: the simulator feeds what it polled (`observe`) and asks, at any moment, what to do
(`tick`). Nothing reads a clock or the network; randomness comes from the `random.Random` given.
Each event's lifecycle on the device is the server's own table (`server.sep2.events.state`), fed
with the device's view of the event: its *effective* interval (the server's interval shifted by the
randomizeStart / randomizeDuration offsets drawn once per event), the cancellation the device
observed, and the other events of its program (supersession).

Rules (IEEE 2030.5-2018 §10.2.3 and CSIP; the response codes of server/sep2/rsps.py):
- Receipt: an event seen for the first time is answered 1 (received), or rejected instead:
  253 invalid (sets no mode, or no duration), 254 received late (its effective end has passed),
  252 not applicable (it sets a mode the device does not support). A rejected event is never
  applied and gets no further response.
- Lifecycle: 2 (started) at the effective start, or at receipt if later; 3 (completed) at the
  effective end; 6 (cancelled) when the server lists it with currentStatus 2 or 3 (from its
  dateTime) or drops it from the list before its scheduled end (2023 edition rule p: an event
  dropped after its scheduled end completed — the server drops events at its own end, so a device
  whose randomized end is later finishes it); 7 (superseded) at the effective start of a newer event
  of the same program that overlaps it and sets every mode it sets (the server's rule), or when the
  server lists it with currentStatus 4. The first terminal response wins; later facts change nothing.
- Across programs the lowest primacy wins, at equal primacy the newer creationTime (then the higher
  mRID). An event whose every mode is taken by a better event of another program that is running is
  aborted: 14 (aborted: alternate program event), at the moment both are running and known; it does
  not resume afterwards, as a superseded event would not. Partial overlaps (some modes, or a newer
  event of the same program that does not supersede) are resolved per mode: the better event sets
  the modes they share, each keeps the others.
- Every moment that passed is reported, in time order, even when several fall between two ticks
  (an event cancelled after its start is answered 2 then 6). Within one moment: receipts, then
  terminal responses, then starts (rule l: SUPERSEDED before the successor's ACTIVE).
- Each response is produced at most once per event and code; a response whose responseRequired
  bit is clear (01 for "received", 02 for all the others) or whose event has no replyTo is counted
  as given but not returned.
- DefaultDERControl: a mode that no running event sets is taken from the default of the
  best-primacy program whose default sets it (CSIP's per-mode fallback).
- Time never runs backwards here: a `now` earlier than the latest one seen is taken as the latest.
- Not modelled: randomized wind-down of a cancellation with randomization (status 3 is treated as
  2), rule m (closing randomization gaps between successive events), opting out (code 4 is never
  produced by this engine), events whose definition changes under the same mRID (the first one
  seen is kept; only its status is followed).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import NamedTuple

from der_sim.devices import MODES, Control
from server.sep2 import events
from server.sep2.der import ActivePower
from server.sep2.derp import DERControl, DERControlBase, DefaultDERControl

__all__ = ["EventEngine", "EventResponse", "ResponseStatus", "Tick", "WIRE_MODES", "decode_control"]


class ResponseStatus(IntEnum):
    RECEIVED = 1
    STARTED = 2
    COMPLETED = 3
    OPT_OUT = 4
    CANCELLED = 6
    SUPERSEDED = 7
    ABORTED_PROGRAM = 14
    NOT_APPLICABLE = 252
    INVALID = 253
    RECEIVED_LATE = 254


R = ResponseStatus
_REJECTIONS = (R.NOT_APPLICABLE, R.INVALID, R.RECEIVED_LATE)
# responseRequired bits (hex flags): 01 message received, 02 specific response, 04 user response.
_BIT_RECEIVED, _BIT_SPECIFIC, _BIT_USER = 0x01, 0x02, 0x04
# Tie order of terminal moments at the same second, as in the server's table: a cancellation or
# supersession at the end wins over completion.
_TERMINAL_ORDER = {R.CANCELLED: 0, R.SUPERSEDED: 1, R.ABORTED_PROGRAM: 2, R.COMPLETED: 3}
# How long a finished event that is no longer listed is remembered (so a late re-listing is not
# taken for a new event).
FORGET_AFTER_S = 3_600

# The DERControlBase elements this simulator understands, by wire name → Control field.
WIRE_MODES = {"opModFixedW": "fixed_w_pct", "opModMaxLimW": "max_lim_w_pct",
              "opModTargetW": "target_w", "opModConnect": "connect",
              # CSIP-AUS dynamic operating envelopes (der_sim.devices: every model follows them)
              "opModExpLimW": "exp_lim_w", "opModImpLimW": "imp_lim_w",
              "opModGenLimW": "gen_lim_w", "opModLoadLimW": "load_lim_w"}
_NOT_MODES = frozenset({"rampTms"})  # a modifier of the modes, not a mode


def wire_modes(base: DERControlBase) -> frozenset[str]:
    """The wire names of the modes a DERControlBase sets."""
    return frozenset(
        f.metadata["xml"] for f in fields(base)
        if getattr(base, f.name) is not None and f.metadata["xml"] not in _NOT_MODES
    )


def decode_control(base: DERControlBase) -> Control:
    """The modes this simulator understands, as plain numbers: hundredths of a percent → percent,
    ActivePower value × 10^multiplier → W (opModTargetW and the csipaus limits). Other modes are
    left out."""
    def watts(power: ActivePower | None) -> float | None:
        return None if power is None else float(power.value * 10**power.multiplier)

    return Control(
        fixed_w_pct=None if base.op_mod_fixed_w is None else base.op_mod_fixed_w / 100.0,
        max_lim_w_pct=None if base.op_mod_max_lim_w is None else base.op_mod_max_lim_w / 100.0,
        target_w=watts(base.op_mod_target_w),
        connect=base.op_mod_connect,
        exp_lim_w=watts(base.op_mod_exp_lim_w),
        imp_lim_w=watts(base.op_mod_imp_lim_w),
        gen_lim_w=watts(base.op_mod_gen_lim_w),
        load_lim_w=watts(base.op_mod_load_lim_w),
    )


class EventResponse(NamedTuple):
    subject: str  # the event's mRID
    status: int
    reply_to: str  # the ResponseList href to POST to


class Tick(NamedTuple):
    control: Control | None  # what the device applies now (events, then defaults); None = own behaviour
    responses: list[EventResponse]


@dataclass(slots=True)
class _Known:
    """One event as the device knows it."""

    mrid: str
    program: str
    creation_time: int
    start: int  # the server's interval
    duration: int
    start_offset: int  # drawn once, at receipt
    duration_offset: int
    control: Control
    wire_modes: frozenset[str]
    reply_to: str | None
    response_required: int
    first_seen: int
    receipt: ResponseStatus
    cancelled_at: int | None = None
    cancel_randomized: bool = False
    server_superseded_at: int | None = None
    listed: bool = True
    sent: set[int] = field(default_factory=set)
    # the device's timeline; frozen once the terminal response was given
    started_at: int | None = None
    ended: tuple[int, ResponseStatus] | None = None
    done: bool = False

    @property
    def eff_start(self) -> int:
        return self.start + self.start_offset

    @property
    def eff_end(self) -> int:
        return self.eff_start + max(1, self.duration + self.duration_offset)

    @property
    def modes(self) -> frozenset[str]:
        return self.control.modes

    def as_event(self) -> events.Event:
        return events.Event(
            mrid=self.mrid, program=self.program, creation_time=self.creation_time,
            start=self.eff_start, duration=self.eff_end - self.eff_start,
            controls=self.wire_modes, targets=_THIS_DEVICE,
            cancelled_at=self.cancelled_at, cancel_randomized=self.cancel_randomized,
        )

    def wants(self, code: ResponseStatus) -> bool:
        if self.reply_to is None:
            return False
        if code is R.RECEIVED:
            bit = _BIT_RECEIVED
        elif code is R.OPT_OUT:
            bit = _BIT_USER
        else:
            bit = _BIT_SPECIFIC
        return bool(self.response_required & bit)


_THIS_DEVICE = frozenset({"this device"})  # every event listed to a device targets it


@dataclass(slots=True)
class _Program:
    primacy: int
    default: Control | None


class EventEngine:
    """Known events per program, their lifecycle on this device, and the control that results.

    `supports` names the Control fields the device can follow (e.g. a model's `supports`)."""

    def __init__(self, rng: random.Random, *, supports: Iterable[str] = MODES) -> None:
        self._rng = rng
        self._supports = frozenset(supports)
        unknown = self._supports - MODES
        if unknown:
            raise ValueError(f"supports names modes that do not exist: {sorted(unknown)} (known: {sorted(MODES)})")
        self._programs: dict[str, _Program] = {}
        self._known: dict[str, _Known] = {}
        self._latest = -(2**63)
        self._applied: tuple[str, ...] = ()

    # ----------------------------------------------------------------------------------- input

    def observe(self, program_mrid: str, primacy: int, der_controls: Sequence[DERControl],
                default: DefaultDERControl | None, now: int) -> None:
        """What a poll of one program found: its primacy, its whole DERControlList, its default."""
        if not program_mrid:
            raise ValueError("program_mrid must not be empty")
        if not 0 <= primacy <= 255:
            raise ValueError(f"primacy of program {program_mrid} must be 0…255, got {primacy}")
        now = self._clock(now)
        self._programs[program_mrid] = _Program(primacy, None if default is None else decode_control(default.der_control_base))
        listed: set[str] = set()
        for dc in der_controls:
            rec = self._known.get(dc.mrid)
            if rec is None:
                rec = self._known[dc.mrid] = self._receive(program_mrid, dc, now)
            elif rec.program != program_mrid:
                continue  # one event listed in two programs: it belongs to the first
            listed.add(dc.mrid)
            rec.listed = True
            self._follow_status(rec, dc, now)
        for rec in self._known.values():
            if rec.program == program_mrid and rec.mrid not in listed and rec.listed:
                rec.listed = False
                if now < rec.start + rec.duration and rec.cancelled_at is None:
                    rec.cancelled_at = now  # rule p: removed before its end = cancelled

    def _receive(self, program: str, dc: DERControl, now: int) -> _Known:
        base = dc.der_control_base
        if base is None or dc.interval is None:
            raise ValueError(f"DERControl {dc.mrid} has no DERControlBase or no interval")
        rec = _Known(
            mrid=dc.mrid, program=program, creation_time=dc.creation_time,
            start=dc.interval.start, duration=dc.interval.duration,
            start_offset=self._draw(dc.randomize_start), duration_offset=self._draw(dc.randomize_duration),
            control=decode_control(base), wire_modes=wire_modes(base),
            reply_to=dc.reply_to, response_required=int(dc.response_required or "00", 16),
            first_seen=now, receipt=R.RECEIVED,
        )
        if not rec.wire_modes or dc.interval.duration <= 0:
            rec.receipt = R.INVALID
        elif rec.eff_end <= now:
            rec.receipt = R.RECEIVED_LATE
        elif not all(WIRE_MODES.get(m) in self._supports for m in rec.wire_modes):
            rec.receipt = R.NOT_APPLICABLE
        return rec

    def _draw(self, spread: int | None) -> int:
        """A randomization offset between 0 and `spread` seconds (either sign), drawn once."""
        if not spread:
            return 0
        return self._rng.randint(0, abs(spread)) * (1 if spread > 0 else -1)

    @staticmethod
    def _follow_status(rec: _Known, dc: DERControl, now: int) -> None:
        st = dc.event_status
        if st is None:
            return
        when = min(st.date_time, now)  # the server's dateTime, never in the device's future
        if st.current_status in (events.Status.CANCELLED, events.Status.CANCELLED_RANDOMIZED):
            if rec.cancelled_at is None:
                rec.cancelled_at = when
                rec.cancel_randomized = st.current_status == events.Status.CANCELLED_RANDOMIZED
        elif st.current_status == events.Status.SUPERSEDED and rec.server_superseded_at is None:
            rec.server_superseded_at = when

    def _clock(self, now: int) -> int:
        self._latest = max(self._latest, int(now))
        return self._latest

    # ---------------------------------------------------------------------------------- output

    def tick(self, now: int) -> Tick:
        """The control to apply at `now` and the responses due since the last tick."""
        now = self._clock(now)
        by_program: dict[str, list[_Known]] = {}
        for rec in self._known.values():
            by_program.setdefault(rec.program, []).append(rec)
        ranked = self._ranked(self._known.values())
        due: list[tuple[int, int, int, EventResponse | None, _Known, ResponseStatus]] = []
        for rank, rec in enumerate(ranked):
            if not rec.done:
                self._advance(rec, now, by_program[rec.program], ranked[:rank])
            for moment, phase, code in self._moments(rec):
                if moment <= now and code not in rec.sent:
                    resp = EventResponse(rec.mrid, int(code), rec.reply_to) if rec.wants(code) and rec.reply_to else None
                    due.append((moment, phase, rank, resp, rec, code))
        due.sort(key=lambda d: d[:3])
        responses = []
        for _, _, _, resp, rec, code in due:
            rec.sent.add(code)
            if code in _REJECTIONS or (rec.ended is not None and code == rec.ended[1]):
                rec.done = True
            if resp is not None:
                responses.append(resp)
        control = self._control([r for r in ranked if self._running(r, now)])
        self._forget(now)
        return Tick(control, responses)

    def applied(self) -> tuple[str, ...]:
        """The mRIDs of the events that set at least one mode at the last tick, best first."""
        return self._applied

    def next_change(self, now: int) -> int | None:
        """The next moment after `now` at which, on what is known, an event starts or ends on this
        device: tick then to apply controls on time."""
        later = [
            t for rec in self._known.values() if not rec.done and rec.receipt is R.RECEIVED
            for t in (max(rec.eff_start, rec.first_seen), rec.eff_end) if t > now
        ]
        return min(later, default=None)

    # ------------------------------------------------------------------------------- lifecycle

    def _ranked(self, recs: Iterable[_Known]) -> list[_Known]:
        """Best first: lowest program primacy, then newest creationTime, then highest mRID."""
        by_mrid = sorted(recs, key=lambda r: r.mrid, reverse=True)
        return sorted(by_mrid, key=lambda r: (self._programs[r.program].primacy, -r.creation_time))

    def _advance(self, rec: _Known, now: int, program: list[_Known], better: list[_Known]) -> None:
        """Recompute the event's timeline from everything known (it is frozen once done)."""
        if rec.receipt is not R.RECEIVED:
            return
        ev = rec.as_event()
        # a newer event supersedes even one this device rejects as not applicable (the server's
        # view); an invalid one supersedes nothing
        others = [o.as_event() for o in program if o is not rec and o.receipt is not R.INVALID]
        st = events.state(ev, min(now, ev.end - 1), others)
        candidates: list[tuple[int, ResponseStatus]] = []
        if st.listed and st.status in (events.Status.CANCELLED, events.Status.CANCELLED_RANDOMIZED):
            candidates.append((st.date_time, R.CANCELLED))
        elif st.listed and st.status == events.Status.SUPERSEDED:
            candidates.append((st.date_time, R.SUPERSEDED))
        if rec.server_superseded_at is not None:
            candidates.append((rec.server_superseded_at, R.SUPERSEDED))
        aborted = self._aborted_at(rec, now, better)
        if aborted is not None:
            candidates.append((aborted, R.ABORTED_PROGRAM))
        if now >= ev.end:
            candidates.append((ev.end, R.COMPLETED))
        ended = min(((max(t, rec.first_seen), code) for t, code in candidates),
                    key=lambda c: (c[0], _TERMINAL_ORDER[c[1]]), default=None)
        start = max(rec.eff_start, rec.first_seen)
        rec.started_at = start if start <= now and (ended is None or start < ended[0]) else None
        rec.ended = ended

    def _aborted_at(self, rec: _Known, now: int, better: list[_Known]) -> int | None:
        """When a running, better event of another program that sets every mode of `rec` took over:
        the first moment both run and both are known (never before `rec`'s own start: a better event
        that ends or is cancelled before then takes nothing from it)."""
        first: int | None = None
        for w in better:
            if w.program == rec.program or w.receipt is not R.RECEIVED or not rec.modes <= w.modes:
                continue
            if w.started_at is None or not (w.eff_start < rec.eff_end and rec.eff_start < w.eff_end):
                continue
            moment = max(w.started_at, rec.eff_start, rec.first_seen)
            if moment > now or moment >= rec.eff_end or (w.ended is not None and moment >= w.ended[0]):
                continue
            first = moment if first is None else min(first, moment)
        return first

    @staticmethod
    def _moments(rec: _Known) -> list[tuple[int, int, ResponseStatus]]:
        """(moment, phase, code) of every response the event's timeline calls for so far."""
        out = [(rec.first_seen, 0, rec.receipt)]
        if rec.receipt is R.RECEIVED:
            if rec.ended is not None:
                out.append((rec.ended[0], 1, rec.ended[1]))
            if rec.started_at is not None:
                out.append((rec.started_at, 2, R.STARTED))
        return out

    def _running(self, rec: _Known, now: int) -> bool:
        return rec.receipt is R.RECEIVED and not rec.done and rec.started_at is not None and rec.started_at <= now

    def _control(self, running: list[_Known]) -> Control | None:
        """Per mode: the best running event that sets it, else the best program default."""
        chosen = Control()
        applied = []
        for rec in running:
            before = chosen
            chosen = chosen.or_else(rec.control)
            if chosen != before:
                applied.append(rec.mrid)
        self._applied = tuple(applied)
        for _, prog in sorted(self._programs.items(), key=lambda kv: (kv[1].primacy, kv[0])):
            if prog.default is not None:
                chosen = chosen.or_else(prog.default)
        chosen = Control(**{m: getattr(chosen, m) if m in self._supports else None for m in MODES})
        return chosen if chosen.modes else None

    def _forget(self, now: int) -> None:
        for mrid in [m for m, r in self._known.items()
                     if r.done and not r.listed and now > max(r.eff_end, r.start + r.duration) + FORGET_AFTER_S]:
            del self._known[mrid]
