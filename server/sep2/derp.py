"""DER program function set (`derp`): DERProgram, DERControl, DefaultDERControl and their lists.

The ActiveDERControlList has no element of its own in the 2018 schema: it is a DERControlList
document served at the program's `actderc` href.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.sep2.der import ActivePower, ReactivePower
from server.sep2.models import SubscribableResource
from server.sep2.types import (
    CSIPAUS_NS,
    AnyURI,
    Boolean,
    HexBinary8,
    HexBinary32,
    MRIDType,
    OneHourRangeType,
    PerCent,
    PowerOfTenMultiplierType,
    PrimacyType,
    SignedPerCent,
    String32,
    String192,
    TimeType,
    UInt8,
    UInt16,
    UInt32,
    Int16,
    ListLinkValue,
    VersionType,
    attr,
    child,
    children,
    elem,
    link,
)


@dataclass(kw_only=True, slots=True)
class DateTimeInterval:
    duration: int = elem("duration", UInt32, required=True, default=0)
    start: int = elem("start", TimeType, required=True, default=0)


@dataclass(kw_only=True, slots=True)
class EventStatus:
    """currentStatus: 0 scheduled, 1 active, 2 cancelled, 3 cancelled with randomization, 4 superseded."""

    current_status: int = elem("currentStatus", UInt8, required=True, default=0)
    date_time: int = elem("dateTime", TimeType, required=True, default=0)
    potentially_superseded: bool = elem("potentiallySuperseded", Boolean, required=True, default=False)
    potentially_superseded_time: int | None = elem("potentiallySupersededTime", TimeType)
    reason: str | None = elem("reason", String192)


@dataclass(kw_only=True, slots=True)
class PowerFactorWithExcitation:
    displacement: int = elem("displacement", UInt16, required=True, default=0)
    excitation: bool = elem("excitation", Boolean, required=True, default=False)
    multiplier: int = elem("multiplier", PowerOfTenMultiplierType, required=True, default=0)


@dataclass(kw_only=True, slots=True)
class FixedVar:
    ref_type: int = elem("refType", UInt8, required=True, default=0)
    value: int = elem("value", SignedPerCent, required=True, default=0)


@dataclass(kw_only=True, slots=True)
class FreqDroopType:
    db_of: int = elem("dBOF", UInt32, required=True, default=0)
    db_uf: int = elem("dBUF", UInt32, required=True, default=0)
    k_of: int = elem("kOF", UInt16, required=True, default=0)
    k_uf: int = elem("kUF", UInt16, required=True, default=0)
    open_loop_tms: int = elem("openLoopTms", UInt16, required=True, default=0)


@dataclass(kw_only=True, slots=True)
class DERControlBase:
    """The modes a control sets. opModFixedW is SignedPerCent of setMaxW (discharge/generation,
    positive) or setMaxChargeRateW (charge, negative); opModMaxLimW PerCent of setMaxW;
    rampTms in hundredths of a second; curve modes link to DERCurves."""

    op_mod_connect: bool | None = elem("opModConnect", Boolean)
    op_mod_energize: bool | None = elem("opModEnergize", Boolean)
    op_mod_fixed_pf_absorb_w: PowerFactorWithExcitation | None = child("opModFixedPFAbsorbW", PowerFactorWithExcitation)
    op_mod_fixed_pf_inject_w: PowerFactorWithExcitation | None = child("opModFixedPFInjectW", PowerFactorWithExcitation)
    op_mod_fixed_var: FixedVar | None = child("opModFixedVar", FixedVar)
    op_mod_fixed_w: int | None = elem("opModFixedW", SignedPerCent)
    op_mod_freq_droop: FreqDroopType | None = child("opModFreqDroop", FreqDroopType)
    op_mod_freq_watt: str | None = link("opModFreqWatt")
    op_mod_hfrt_may_trip: str | None = link("opModHFRTMayTrip")
    op_mod_hfrt_must_trip: str | None = link("opModHFRTMustTrip")
    op_mod_hvrt_may_trip: str | None = link("opModHVRTMayTrip")
    op_mod_hvrt_momentary_cessation: str | None = link("opModHVRTMomentaryCessation")
    op_mod_hvrt_must_trip: str | None = link("opModHVRTMustTrip")
    op_mod_lfrt_may_trip: str | None = link("opModLFRTMayTrip")
    op_mod_lfrt_must_trip: str | None = link("opModLFRTMustTrip")
    op_mod_lvrt_may_trip: str | None = link("opModLVRTMayTrip")
    op_mod_lvrt_momentary_cessation: str | None = link("opModLVRTMomentaryCessation")
    op_mod_lvrt_must_trip: str | None = link("opModLVRTMustTrip")
    op_mod_max_lim_w: int | None = elem("opModMaxLimW", PerCent)
    op_mod_target_var: ReactivePower | None = child("opModTargetVar", ReactivePower)
    op_mod_target_w: ActivePower | None = child("opModTargetW", ActivePower)
    op_mod_volt_var: str | None = link("opModVoltVar")
    op_mod_volt_watt: str | None = link("opModVoltWatt")
    op_mod_watt_pf: str | None = link("opModWattPF")
    op_mod_watt_var: str | None = link("opModWattVar")
    ramp_tms: int | None = elem("rampTms", UInt16)
    # CSIP-AUS dynamic operating envelopes (server/sep2/csipaus.py), in csipaus-core.xsd's order:
    # the site's import and export limits at the connection point, a device's generation
    # (discharge) and load (charge) limits, in W.
    op_mod_imp_lim_w: ActivePower | None = child("opModImpLimW", ActivePower, ns=CSIPAUS_NS)
    op_mod_exp_lim_w: ActivePower | None = child("opModExpLimW", ActivePower, ns=CSIPAUS_NS)
    op_mod_gen_lim_w: ActivePower | None = child("opModGenLimW", ActivePower, ns=CSIPAUS_NS)
    op_mod_load_lim_w: ActivePower | None = child("opModLoadLimW", ActivePower, ns=CSIPAUS_NS)


@dataclass(kw_only=True, slots=True)
class DERControl(SubscribableResource):
    """A DER event: what to do (DERControlBase), when (interval), and its status at read time."""

    reply_to: str | None = attr("replyTo", AnyURI)
    response_required: str | None = attr("responseRequired", HexBinary8)
    mrid: str = elem("mRID", MRIDType, required=True, default="")
    description: str | None = elem("description", String32)
    version: int | None = elem("version", VersionType)
    creation_time: int = elem("creationTime", TimeType, required=True, default=0)
    event_status: EventStatus = child("EventStatus", EventStatus, required=True)
    interval: DateTimeInterval = child("interval", DateTimeInterval, required=True)
    randomize_duration: int | None = elem("randomizeDuration", OneHourRangeType)
    randomize_start: int | None = elem("randomizeStart", OneHourRangeType)
    der_control_base: DERControlBase = child("DERControlBase", DERControlBase, required=True)
    device_category: str | None = elem("deviceCategory", HexBinary32)


@dataclass(kw_only=True, slots=True)
class DERControlList(SubscribableResource):
    """A program's controls (`derc`), or only its active ones (`actderc`)."""

    all: int = attr("all", UInt32, default=0)
    results: int = attr("results", UInt32, default=0)
    der_controls: list[DERControl] = children("DERControl", DERControl)


@dataclass(kw_only=True, slots=True)
class DefaultDERControl(SubscribableResource):
    """What a device does in this program when no event is active; own mRID, version bumps."""

    mrid: str = elem("mRID", MRIDType, required=True, default="")
    description: str | None = elem("description", String32)
    version: int | None = elem("version", VersionType)
    der_control_base: DERControlBase = child("DERControlBase", DERControlBase, required=True)
    set_es_delay: int | None = elem("setESDelay", UInt32)
    set_es_high_freq: int | None = elem("setESHighFreq", UInt16)
    set_es_high_volt: int | None = elem("setESHighVolt", Int16)
    set_es_low_freq: int | None = elem("setESLowFreq", UInt16)
    set_es_low_volt: int | None = elem("setESLowVolt", Int16)
    set_es_ramp_tms: int | None = elem("setESRampTms", UInt32)
    set_es_random_delay: int | None = elem("setESRandomDelay", UInt32)
    set_grad_w: int | None = elem("setGradW", UInt16)
    set_soft_grad_w: int | None = elem("setSoftGradW", UInt16)


@dataclass(kw_only=True, slots=True)
class DERProgram(SubscribableResource):
    """A DER program: its controls, its default, and its primacy (lower wins across programs)."""

    mrid: str = elem("mRID", MRIDType, required=True, default="")
    description: str | None = elem("description", String32)
    version: int | None = elem("version", VersionType)
    active_der_control_list_link: ListLinkValue | None = link("ActiveDERControlListLink", list_link=True)
    default_der_control_link: str | None = link("DefaultDERControlLink")
    der_control_list_link: ListLinkValue | None = link("DERControlListLink", list_link=True)
    der_curve_list_link: ListLinkValue | None = link("DERCurveListLink", list_link=True)
    primacy: int = elem("primacy", PrimacyType, required=True, default=0)


@dataclass(kw_only=True, slots=True)
class DERProgramList(SubscribableResource):
    all: int = attr("all", UInt32, default=0)
    results: int = attr("results", UInt32, default=0)
    poll_rate: int | None = attr("pollRate", UInt32)
    der_programs: list[DERProgram] = children("DERProgram", DERProgram)
