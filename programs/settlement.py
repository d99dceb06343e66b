"""Settlement: what each device earned in a program, and who gets which part of it (pure).

Plain data in, plain data out; exact arithmetic (`fractions.Fraction`) throughout, money as
integers in the currency's minor units (cents, paise; ISO 4217 exponent, `CURRENCY_EXPONENTS`).

Rules (design: flexibility.md "Settlement"; seed §2.8, §3.7):

* Numbers in. kW, prices and rates may be int, float, Decimal, Fraction or a text ("0.18",
  "1/9"). A float is read by its shortest repr (0.1 is 1/10, not the binary double), so no error
  of binary floating point ever reaches an amount. bool, NaN and infinities are refused.
* Lines. Per device and interval (duration Δt = duration_s / 3600 h; delivered reduction R (kW,
  may be negative), setpoint s >= 0 (kW reduction)): a "delivery" line pays
  price · min(max(R, 0), s) · Δt, the price being the interval's cleared (node) price for
  "pay_as_clear" (or the device's when the interval gives none) and rate_per_kwh for "fixed";
  an "under_delivery" line charges λ · max(0, s − R) · Δt when λ = under_delivery_per_kwh > 0.
* Rounding: ROUND HALF-EVEN, once per line, from the exact product to minor units (every line
  amount is an integer; nothing is rounded again). Chosen because a settlement sums many lines
  whose exact values often end in exactly half a minor unit (0.2 kW · 0.25 h · $0.10 = 0.5 cent):
  half-up would bias every such tie upward, half-even is unbiased on average and symmetric for
  charges (round(−x) = −round(x)).
* Net negative. A device's gross G = the sum of its line amounts. If G < 0 (penalties exceed
  earnings) and the rule's allow_net_negative is false, a "waived" line of −G is added: the charge
  is capped at what the device earned, the excess is forgiven (not carried forward), and G = 0.
* Revenue split of a device's G (`RevenueSplit.split`), parties in the order SELLER (prosumer),
  GRID_OPERATOR, AGGREGATOR, GOVERNMENT (the seed's order):
  - tax "inclusive": G already contains the tax; T = G·τ/(1+τ); the flows sum to total = G.
  - tax "exclusive": G is the pre-tax amount; T = G·τ rounded half-even to a minor unit is added
    on top; the flows sum to total = G + T (what the payer pays).
  - grid fee: grid_fee_per_kwh · (credited kWh) OR grid_fee_rate · G; giving both is refused.
  - aggregator fee: aggregator_fee_rate · G + aggregator_fee_fixed_minor (once per device).
  - prosumer = the rest. Fees are deducted from what is left after tax, grid first, then the
    aggregator, each capped at what is left, so fees never make the prosumer share negative.
    The rates (and an inclusive tax's share τ/(1+τ)) may not sum above 1.
  - G <= 0: nothing to share; a penalty (G < 0, only when allowed) is the prosumer's alone:
    prosumer = G, every other flow 0, no tax.
  - The exact shares (summing exactly to the integer total) are floored and the leftover units
    go by LARGEST REMAINDER, ties to the earlier party in the order above
    (`largest_remainder`): the flows sum to the total exactly. 100 in thirds is 34/33/33.
* Determinism: devices are settled in device_id order (ids must be distinct), intervals in start
  order (starts distinct per device); the result does not depend on the order given.
* Seed §3.7 (₹100 → 60/20/10/10): its "Tax (10%)" of ₹10 is 10% of the tax-inclusive total,
  i.e. an inclusive τ = 1/9; an inclusive 10% gives ₹9.09 and an exclusive 10% on ₹100 gives ₹10
  on top (₹110 paid). tests/unit/test_settlement.py shows all three.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Callable, Iterable, Mapping, Sequence

__all__ = ["CURRENCY_EXPONENTS", "DeviceDelivery", "DeviceSettlement", "Flow", "IntervalDelivery",
           "Line", "RevenueSplit", "ROLES", "Settlement", "SettlementError", "SettlementRule",
           "exact", "exponent", "largest_remainder", "round_half_even", "settle", "text", "to_minor"]

# ISO 4217 minor-unit exponents (a selection; extend as programs need).
CURRENCY_EXPONENTS: dict[str, int] = {
    "AED": 2, "AUD": 2, "BHD": 3, "BRL": 2, "CAD": 2, "CHF": 2, "CLP": 0, "CNY": 2, "CZK": 2,
    "DKK": 2, "EUR": 2, "GBP": 2, "HKD": 2, "HUF": 2, "IDR": 2, "INR": 2, "IQD": 3, "ISK": 0,
    "JOD": 3, "JPY": 0, "KRW": 0, "KWD": 3, "LYD": 3, "MXN": 2, "NOK": 2, "NZD": 2, "OMR": 3,
    "PLN": 2, "SAR": 2, "SEK": 2, "SGD": 2, "TND": 3, "USD": 2, "VND": 0, "XOF": 0, "ZAR": 2,
}
ROLES = ("SELLER", "GRID_OPERATOR", "AGGREGATOR", "GOVERNMENT")  # also the tie order
TAX_MODES = ("inclusive", "exclusive")
INCENTIVE_KINDS = ("pay_as_clear", "fixed")
_DESCRIPTIONS = {"SELLER": "Flexibility delivered", "GRID_OPERATOR": "Wheeling charges",
                 "AGGREGATOR": "Platform fee", "GOVERNMENT": "Tax"}


class SettlementError(ValueError):
    """Invalid settlement input; `errors` lists one "field: problem" message per wrong field."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("invalid settlement: " + "; ".join(self.errors))


# --- numbers and money ---------------------------------------------------------------------------
def exponent(currency: str) -> int:
    """The ISO 4217 minor-unit exponent of `currency` (USD 2, JPY 0, KWD 3)."""
    try:
        return CURRENCY_EXPONENTS[currency]
    except (KeyError, TypeError):
        raise ValueError(f"unknown currency {currency!r}: no minor-unit exponent known "
                         f"(known: {', '.join(sorted(CURRENCY_EXPONENTS))})") from None


def exact(v: object) -> Fraction:
    """A number as an exact Fraction (floats by their shortest repr; texts "0.1" or "1/9")."""
    if isinstance(v, bool) or not isinstance(v, (int, float, Decimal, Fraction, str)):
        raise ValueError(f"must be a number, got {v!r}")
    try:
        if isinstance(v, float):
            if not math.isfinite(v):
                raise ValueError
            return Fraction(Decimal(repr(v)))
        if isinstance(v, Decimal) and not v.is_finite():
            raise ValueError
        return Fraction(v.strip() if isinstance(v, str) else v)
    except (ValueError, ZeroDivisionError, InvalidOperation):
        raise ValueError(f"must be a finite number, got {v!r}") from None


def round_half_even(x: Fraction) -> int:
    """x rounded to an integer, ties to the even neighbour (symmetric: f(-x) = -f(x))."""
    q, r = divmod(x.numerator, x.denominator)  # floor division, 0 <= r < denominator
    twice = 2 * r
    if twice > x.denominator or (twice == x.denominator and q % 2 == 1):
        q += 1
    return q


def to_minor(amount: Fraction, currency: str) -> int:
    """An exact amount in major units (₹, $) as integer minor units, rounded half-even."""
    return round_half_even(Fraction(amount) * 10 ** exponent(currency))


def largest_remainder(total: int, shares: Sequence[Fraction]) -> list[int]:
    """Integers summing exactly to `total`, each the floor of its exact share plus at most one:
    the leftover units go to the largest fractional parts, ties to the earlier share."""
    if sum(shares, Fraction(0)) != total:
        raise ValueError(f"shares sum to {sum(shares, Fraction(0))}, not to {total}")
    out = [math.floor(s) for s in shares]
    left = total - sum(out)
    order = sorted(range(len(shares)), key=lambda i: (-(shares[i] - out[i]), i))
    for i in order[:left]:
        out[i] += 1
    return out


def _text(x: Fraction) -> str:
    """Canonical JSON text of an exact number: a decimal when it terminates ("0.18"), else "1/9"."""
    d = x.denominator
    k = 0
    while d % 2 == 0 or d % 5 == 0:
        d //= 2 if d % 2 == 0 else 5
        k += 1
    if d != 1:
        return f"{x.numerator}/{x.denominator}"
    v = Decimal(x.numerator * 10 ** k // x.denominator).scaleb(-k)
    return format(v.normalize(), "f")


text = _text  # public: reports write exact numbers the same way


# --- field checks: value -> normalised value, or ValueError --------------------------------------
def _at_least_0(v: object) -> Fraction:
    x = exact(v)
    if x < 0:
        raise ValueError(f"must be 0 or more, got {v!r}")
    return x


def _share(v: object) -> Fraction:
    x = _at_least_0(v)
    if x > 1:
        raise ValueError(f"must be a fraction of the gross between 0 and 1 (0.2 = 20%), got {v!r}")
    return x


def _optional(check: Callable[[object], Any]) -> Callable[[object], Any]:
    return lambda v: None if v is None else check(v)


def _must(test: Callable[[Any], bool], want: str) -> Callable[[object], Any]:
    def check(v: object) -> Any:
        if not test(v):
            raise ValueError(f"must be {want}, got {v!r}")
        return v
    return check


def _one_of(options: tuple[str, ...]) -> Callable[[object], Any]:
    return _must(lambda v: v in options, f"one of {', '.join(options)}")


_party = _must(lambda v: isinstance(v, str) and v.strip() != "", "a non-blank party id")
_minor = _must(lambda v: type(v) is int and v >= 0, "a whole number of minor units, 0 or more")
_duration = _must(lambda v: type(v) is int and v > 0, "a whole number of seconds > 0")
_flag = _must(lambda v: isinstance(v, bool), "true or false")


def _currency(v: object) -> str:
    exponent(v)  # type: ignore[arg-type]
    return v  # type: ignore[return-value]


def _check(obj: Any, checks: Mapping[str, Callable[[object], Any]]) -> list[str]:
    """Normalise each field of a frozen dataclass in place; returns the "field: problem" list."""
    errors = []
    for f in fields(obj):
        try:
            object.__setattr__(obj, f.name, checks[f.name](getattr(obj, f.name)))
        except ValueError as e:
            errors.append(f"{f.name}: {e}")
    return errors


def _to_dict(v: Any) -> Any:
    """JSON-safe form: dataclasses as objects of every field, exact numbers as texts, ISO times."""
    if isinstance(v, Fraction):
        return _text(v)
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, (tuple, list)):
        return [_to_dict(x) for x in v]
    if hasattr(v, "__dataclass_fields__"):
        return {f.name: _to_dict(getattr(v, f.name)) for f in fields(v)}
    return v


def _from_dict(cls: type, d: object) -> Any:
    names = [f.name for f in fields(cls)]
    if not isinstance(d, Mapping):
        raise SettlementError([f"{cls.__name__}: must be a JSON object, got {d!r}"])
    errors = [f"{k}: unknown field (known: {', '.join(names)})" for k in d if k not in names]
    errors += [f"{n}: required" for n in getattr(cls, "_REQUIRED", ()) if n not in d]
    if errors:
        raise SettlementError(errors)
    return dict(d)


# --- configuration -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RevenueSplit:
    """Who shares a device's gross, and how (module docstring, "Revenue split")."""

    tax_rate: Fraction = Fraction(0)
    tax_mode: str = "inclusive"
    grid_fee_per_kwh: Fraction | None = None  # currency (major units) per credited kWh
    grid_fee_rate: Fraction | None = None  # fraction of G
    aggregator_fee_rate: Fraction = Fraction(0)  # fraction of G
    aggregator_fee_fixed_minor: int = 0  # minor units, once per device settled
    grid_operator: str = "grid-operator"
    aggregator: str = "aggregator"
    government: str = "government"

    def __post_init__(self) -> None:
        errors = _check(self, _SPLIT_CHECKS)
        if self.grid_fee_per_kwh is not None and self.grid_fee_rate is not None:
            errors.append("grid_fee_rate: give grid_fee_per_kwh or grid_fee_rate, not both")
        elif not errors:
            tax_share = self.tax_rate / (1 + self.tax_rate) if self.tax_mode == "inclusive" else 0
            rates = tax_share + (self.grid_fee_rate or 0) + self.aggregator_fee_rate
            if rates > 1:
                errors.append(f"aggregator_fee_rate: the rates take {float(rates):.4%} of the gross "
                              "(inclusive tax + grid + aggregator must be at most 100%)")
        if errors:
            raise SettlementError(errors)

    @classmethod
    def from_dict(cls, d: object) -> "RevenueSplit":
        return cls(**_from_dict(cls, d))

    def to_dict(self) -> dict[str, Any]:
        """Every key; exact numbers as texts ("0.2", "1/9")."""
        return _to_dict(self)

    def split(self, gross_minor: int, currency: str, prosumer: str = "prosumer",
              energy_kwh: object = 0) -> tuple["Flow", ...]:
        """The flows of one gross (SELLER, GRID_OPERATOR, AGGREGATOR, GOVERNMENT); they sum to
        gross_minor (inclusive tax, or G <= 0) or to gross_minor + tax (exclusive tax)."""
        scale = 10 ** exponent(currency)
        energy = exact(energy_kwh)
        if gross_minor <= 0:
            amounts = [gross_minor, 0, 0, 0]
        else:
            g = Fraction(gross_minor)
            if self.tax_mode == "inclusive":
                tax = g * self.tax_rate / (1 + self.tax_rate)
                total, left = gross_minor, g - tax
            else:
                tax = Fraction(round_half_even(g * self.tax_rate))
                total, left = gross_minor + int(tax), g
            if self.grid_fee_per_kwh is not None:
                grid = self.grid_fee_per_kwh * max(energy, Fraction(0)) * scale
            else:
                grid = (self.grid_fee_rate or 0) * g
            grid = min(grid, left)
            agg = min(self.aggregator_fee_rate * g + self.aggregator_fee_fixed_minor, left - grid)
            amounts = largest_remainder(total, [left - grid - agg, grid, agg, tax])
        parties = (prosumer, self.grid_operator, self.aggregator, self.government)
        pct = _text(self.tax_rate * 100)
        tax_note = f"Tax ({self.tax_mode} {pct if '/' not in pct else format(float(self.tax_rate * 100), '.2f')}%)"
        return tuple(Flow(p, r, a, currency, tax_note if r == "GOVERNMENT" else _DESCRIPTIONS[r])
                     for p, r, a in zip(parties, ROLES, amounts))


_SPLIT_CHECKS: dict[str, Callable[[object], Any]] = {
    "tax_rate": _at_least_0, "tax_mode": _one_of(TAX_MODES),
    "grid_fee_per_kwh": _optional(_at_least_0), "grid_fee_rate": _optional(_share),
    "aggregator_fee_rate": _share, "aggregator_fee_fixed_minor": _minor,
    "grid_operator": _party, "aggregator": _party, "government": _party,
}


@dataclass(frozen=True)
class SettlementRule:
    """How a program pays (incentive, under-delivery, penalties) and splits (RevenueSplit).

    JSON form: {"currency": "INR", "incentive": "pay_as_clear" | "fixed", "rate_per_kwh": null |
    "0.12", "under_delivery_per_kwh": "0", "allow_net_negative": false, "split": {RevenueSplit}};
    from_dict rejects unknown keys and names every wrong field; from_dict(to_dict(r)) == r."""

    currency: str
    incentive: str
    rate_per_kwh: Fraction | None = None
    under_delivery_per_kwh: Fraction = Fraction(0)
    allow_net_negative: bool = False
    split: RevenueSplit = RevenueSplit()

    _REQUIRED = ("currency", "incentive")

    def __post_init__(self) -> None:
        errors = _check(self, _RULE_CHECKS)
        rate = self.rate_per_kwh
        if self.incentive == "fixed" and (rate is None or isinstance(rate, Fraction) and rate <= 0):
            errors.append(f"rate_per_kwh: a fixed incentive needs a rate > 0, got {rate}")
        elif self.incentive == "pay_as_clear" and self.rate_per_kwh is not None:
            errors.append("rate_per_kwh: must be null for pay_as_clear (the cleared price is paid)")
        if errors:
            raise SettlementError(errors)

    @classmethod
    def from_dict(cls, d: object) -> "SettlementRule":
        kw = _from_dict(cls, d)
        errors: list[str] = []
        if "split" in kw:
            try:
                kw["split"] = RevenueSplit.from_dict(kw["split"])
            except SettlementError as e:
                errors = [f"split.{m}".replace("split.RevenueSplit:", "split:") for m in e.errors]
                kw["split"] = RevenueSplit()
        try:
            rule = cls(**kw)
        except SettlementError as e:
            errors += e.errors
        if errors:
            raise SettlementError(errors)
        return rule

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @classmethod
    def for_program(cls, program: Any, split: RevenueSplit = RevenueSplit(),
                    allow_net_negative: bool = False) -> "SettlementRule":
        """The rule of a programs.model.Program (its currency and incentive)."""
        inc = program.incentive
        return cls(program.currency, inc.kind, inc.rate_per_kwh, inc.under_delivery_per_kwh,
                   allow_net_negative, split)


_RULE_CHECKS: dict[str, Callable[[object], Any]] = {
    "currency": _currency, "incentive": _one_of(INCENTIVE_KINDS),
    "rate_per_kwh": _optional(exact), "under_delivery_per_kwh": _at_least_0,
    "allow_net_negative": _flag, "split": _must(lambda v: isinstance(v, RevenueSplit), "a RevenueSplit"),
}


# --- input and result ----------------------------------------------------------------------------
@dataclass(frozen=True)
class IntervalDelivery:
    """One interval of one device: delivered reduction R (kW, may be negative), setpoint s (kW
    reduction, >= 0), its duration, and the cleared price (currency/kWh) for pay_as_clear."""

    start: datetime
    duration_s: int
    delivered_kw: object
    setpoint_kw: object
    price_per_kwh: object = None


@dataclass(frozen=True)
class DeviceDelivery:
    """A device's intervals; prosumer = the party paid (default: the device id); price_per_kwh =
    the device's cleared (node) price, used where an interval gives none."""

    device_id: str
    intervals: Sequence[IntervalDelivery]
    prosumer: str | None = None
    price_per_kwh: object = None


@dataclass(frozen=True)
class Line:
    """One priced quantity behind a figure: kind "delivery" (energy credited · price),
    "under_delivery" (shortfall kWh · λ, negative) or "waived" (a capped charge given back)."""

    device_id: str
    start: datetime | None
    duration_s: int
    kind: str
    energy_kwh: Fraction
    price_per_kwh: Fraction
    amount_minor: int


@dataclass(frozen=True)
class Flow:
    """Money to one party in one role, in integer minor units of `currency`."""

    party: str
    role: str
    amount_minor: int
    currency: str
    description: str = ""

    @property
    def amount(self) -> Decimal:
        """The amount in major units (exact): 6000 paise -> Decimal('60.00')."""
        return Decimal(self.amount_minor).scaleb(-exponent(self.currency))


@dataclass(frozen=True)
class DeviceSettlement:
    device_id: str
    prosumer: str
    lines: tuple[Line, ...]
    energy_kwh: Fraction  # credited (delivery lines)
    gross_minor: int  # sum of the line amounts
    total_minor: int  # sum of the flows
    flows: tuple[Flow, ...]


@dataclass(frozen=True)
class Settlement:
    """Per-party flows (summed over devices, in role order then party id) and, per device, the
    lines and flows behind them; sum(flows) == total_minor exactly."""

    currency: str
    devices: tuple[DeviceSettlement, ...]
    flows: tuple[Flow, ...]
    gross_minor: int
    tax_minor: int
    total_minor: int

    @property
    def lines(self) -> tuple[Line, ...]:
        return tuple(ln for d in self.devices for ln in d.lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe report of every field (exact numbers as texts, times in ISO 8601)."""
        return _to_dict(self)


# --- settling ------------------------------------------------------------------------------------
def settle(rule: SettlementRule, devices: Iterable[DeviceDelivery]) -> Settlement:
    """Settle every device under `rule` (module docstring); SettlementError names each bad input."""
    devs = list(devices)
    errors: list[str] = []
    seen: set[str] = set()
    for d in devs:
        if not isinstance(d, DeviceDelivery) or not isinstance(d.device_id, str) or not d.device_id:
            errors.append(f"devices: each must be a DeviceDelivery with a non-blank device_id, got {d!r}")
        elif d.device_id in seen:
            errors.append(f"devices[{d.device_id}]: listed twice")
        else:
            seen.add(d.device_id)
    if errors:
        raise SettlementError(errors)
    out = []
    for d in sorted(devs, key=lambda d: d.device_id):
        try:
            out.append(_settle_device(rule, d))
        except SettlementError as e:
            errors.extend(e.errors)
    if errors:
        raise SettlementError(errors)
    totals: dict[tuple[str, str], int] = {}
    for ds in out:
        for f in ds.flows:
            totals[f.role, f.party] = totals.get((f.role, f.party), 0) + f.amount_minor
    rank = {r: i for i, r in enumerate(ROLES)}
    flows = tuple(Flow(p, r, a, rule.currency, _DESCRIPTIONS[r])
                  for (r, p), a in sorted(totals.items(), key=lambda kv: (rank[kv[0][0]], kv[0][1])))
    return Settlement(rule.currency, tuple(out), flows,
                      gross_minor=sum(d.gross_minor for d in out),
                      tax_minor=sum(f.amount_minor for f in flows if f.role == "GOVERNMENT"),
                      total_minor=sum(d.total_minor for d in out))


def _read(errors: list[str], at: str, obj: object, name: str, check: Callable[[object], Any]) -> Any:
    try:
        return check(getattr(obj, name))
    except ValueError as e:
        errors.append(f"{at}.{name}: {e}")
        return _BAD


_BAD = object()  # a field that failed its check (already named in the errors)
_INTERVAL_CHECKS = (("duration_s", _duration), ("delivered_kw", exact), ("setpoint_kw", _at_least_0),
                    ("price_per_kwh", _optional(_at_least_0)))


def _settle_device(rule: SettlementRule, d: DeviceDelivery) -> DeviceSettlement:
    where = f"devices[{d.device_id}]"
    errors: list[str] = []
    _read(errors, where, d, "prosumer", _optional(_party))
    device_price = _read(errors, where, d, "price_per_kwh", _optional(_at_least_0))
    rows, starts = [], set()
    for k, iv in enumerate(d.intervals):
        at = f"{where}.intervals[{k}]"
        if not isinstance(iv, IntervalDelivery) or not isinstance(iv.start, datetime) or iv.start.tzinfo is None:
            errors.append(f"{at}: must be an IntervalDelivery with an aware datetime start, got {iv!r}")
            continue
        if iv.start in starts:
            errors.append(f"{at}.start: {iv.start.isoformat()} is listed twice")
        starts.add(iv.start)
        row = {"start": iv.start, **{n: _read(errors, at, iv, n, c) for n, c in _INTERVAL_CHECKS}}
        own = row["price_per_kwh"]
        row["price"] = (rule.rate_per_kwh if rule.incentive == "fixed" else
                        own if own is not None else device_price)
        if row["price"] is None:
            errors.append(f"{at}.price_per_kwh: pay_as_clear needs the cleared price "
                          "(on the interval or the device)")
        rows.append(row)
    if errors:
        raise SettlementError(errors)

    lines: list[Line] = []
    lam = rule.under_delivery_per_kwh
    energy_total = Fraction(0)
    for row in sorted(rows, key=lambda r: r["start"]):
        hours = Fraction(row["duration_s"], 3600)
        r, s = row["delivered_kw"], row["setpoint_kw"]
        energy = min(max(r, Fraction(0)), s) * hours
        energy_total += energy
        lines.append(Line(d.device_id, row["start"], row["duration_s"], "delivery", energy,
                          row["price"], to_minor(row["price"] * energy, rule.currency)))
        if lam > 0 and s > r:
            short = (s - r) * hours
            lines.append(Line(d.device_id, row["start"], row["duration_s"], "under_delivery", short,
                              lam, -to_minor(lam * short, rule.currency)))
    gross = sum(ln.amount_minor for ln in lines)
    if gross < 0 and not rule.allow_net_negative:
        lines.append(Line(d.device_id, None, 0, "waived", Fraction(0), Fraction(0), -gross))
        gross = 0
    prosumer = d.prosumer if d.prosumer is not None else d.device_id
    flows = rule.split.split(gross, rule.currency, prosumer, energy_total)
    return DeviceSettlement(d.device_id, prosumer, tuple(lines), energy_total, gross,
                            sum(f.amount_minor for f in flows), flows)

