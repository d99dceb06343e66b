"""The DER function set's wire models: round trips, validity against the official schema, and
refusal of out-of-range values and missing elements (faithfulness to the XSD: test_sep2_xsd)."""

from __future__ import annotations

import dataclasses

import pytest

from server.sep2 import codec, der
from server.sep2.codec import DecodeError
from server.sep2.der import (
    DER,
    ActivePower,
    AmpereHour,
    ApparentPower,
    ConnectStatusType,
    CurrentRMS,
    DERAvailability,
    DERCapability,
    DERList,
    DERSettings,
    DERStatus,
    InverterStatusType,
    LocalControlModeStatusType,
    ManufacturerStatusType,
    OperationalModeStatusType,
    PowerFactor,
    ReactivePower,
    ReactiveSusceptance,
    StateOfChargeStatusType,
    StorageModeStatusType,
    VoltageRMS,
    WattHour,
)
from server.sep2.types import ListLinkValue

NOW = 1_700_000_000
BASE = "/edev/3/der/1"
# opModConnect, opModEnergize, opModFixedW, opModMaxLimW, opModTargetW (bits 2, 3, 7, 20, 22)
MODES = "0050008C"

FULL_DER = DER(
    href=BASE,
    subscribable=3,
    associated_der_program_list_link=ListLinkValue("/edev/3/fsa/1/derp", 2),
    associated_usage_point_link="/upt/7",
    current_der_program_link="/derp/1",
    der_availability_link=f"{BASE}/dera",
    der_capability_link=f"{BASE}/dercap",
    der_settings_link=f"{BASE}/derg",
    der_status_link=f"{BASE}/ders",
)

FULL = {
    "DERList": DERList(
        href="/edev/3/der",
        all=2,
        results=2,
        poll_rate=900,
        ders=[FULL_DER, DER(href="/edev/3/der/2")],
    ),
    "DER": FULL_DER,
    "DERCapability": DERCapability(
        href=f"{BASE}/dercap",
        modes_supported=MODES,
        rtg_abnormal_category=3,
        rtg_max_a=CurrentRMS(multiplier=0, value=32),
        rtg_max_ah=AmpereHour(multiplier=0, value=65535),  # UInt16 max
        rtg_max_charge_rate_va=ApparentPower(multiplier=0, value=5000),
        rtg_max_charge_rate_w=ActivePower(multiplier=0, value=5000),
        rtg_max_discharge_rate_va=ApparentPower(multiplier=0, value=5000),
        rtg_max_discharge_rate_w=ActivePower(multiplier=0, value=5000),
        rtg_max_v=VoltageRMS(multiplier=-1, value=2640),
        rtg_max_va=ApparentPower(multiplier=3, value=10),
        rtg_max_var=ReactivePower(multiplier=0, value=32767),  # Int16 max
        rtg_max_var_neg=ReactivePower(multiplier=0, value=-32768),  # Int16 min
        rtg_max_w=ActivePower(multiplier=3, value=10),
        rtg_max_wh=WattHour(multiplier=1, value=1350),
        rtg_min_pf_over_excited=PowerFactor(displacement=850, multiplier=-3),
        rtg_min_pf_under_excited=PowerFactor(displacement=850, multiplier=-3),
        rtg_min_v=VoltageRMS(multiplier=-1, value=2110),
        rtg_normal_category=2,
        rtg_over_excited_pf=PowerFactor(displacement=900, multiplier=-3),
        rtg_over_excited_w=ActivePower(multiplier=0, value=9000),
        rtg_reactive_susceptance=ReactiveSusceptance(multiplier=-3, value=12),
        rtg_under_excited_pf=PowerFactor(displacement=900, multiplier=-3),
        rtg_under_excited_w=ActivePower(multiplier=0, value=9000),
        rtg_v_nom=VoltageRMS(multiplier=0, value=240),
        type=83,
        doe_modes_supported="0F",  # CSIP-AUS
    ),
    "DERSettings": DERSettings(
        href=f"{BASE}/derg",
        subscribable=0,
        modes_enabled="0010008C",
        set_es_delay=30000,
        set_es_high_freq=6010,
        set_es_high_volt=10500,
        set_es_low_freq=5950,
        set_es_low_volt=-32768,  # Int16 min
        set_es_ramp_tms=30000,
        set_es_random_delay=0,
        set_grad_w=65535,  # UInt16 max
        set_max_a=CurrentRMS(multiplier=0, value=30),
        set_max_ah=AmpereHour(multiplier=0, value=0),
        set_max_charge_rate_va=ApparentPower(multiplier=0, value=4600),
        set_max_charge_rate_w=ActivePower(multiplier=0, value=4600),
        set_max_discharge_rate_va=ApparentPower(multiplier=0, value=4600),
        set_max_discharge_rate_w=ActivePower(multiplier=0, value=4600),
        set_max_v=VoltageRMS(multiplier=-1, value=2640),
        set_max_va=ApparentPower(multiplier=0, value=9000),
        set_max_var=ReactivePower(multiplier=0, value=4000),
        set_max_var_neg=ReactivePower(multiplier=0, value=-4000),
        set_max_w=ActivePower(multiplier=3, value=9),
        set_max_wh=WattHour(multiplier=1, value=1200),
        set_min_pf_over_excited=PowerFactor(displacement=900, multiplier=-3),
        set_min_pf_under_excited=PowerFactor(displacement=900, multiplier=-3),
        set_min_v=VoltageRMS(multiplier=-1, value=2110),
        set_soft_grad_w=0,
        set_v_nom=VoltageRMS(multiplier=0, value=230),
        set_v_ref=VoltageRMS(multiplier=0, value=230),
        set_v_ref_ofs=VoltageRMS(multiplier=0, value=0),
        updated_time=NOW,
        doe_modes_enabled="03",  # CSIP-AUS
    ),
    "DERStatus": DERStatus(
        href=f"{BASE}/ders",
        subscribable=1,
        alarm_status="00000081",
        gen_connect_status=ConnectStatusType(date_time=NOW - 60, value="07"),
        inverter_status=InverterStatusType(date_time=NOW - 60, value=4),
        local_control_mode_status=LocalControlModeStatusType(date_time=NOW - 600, value=1),
        manufacturer_status=ManufacturerStatusType(date_time=NOW - 5, value="E-0042"),  # 6 chars
        operational_mode_status=OperationalModeStatusType(date_time=NOW - 600, value=2),
        reading_time=NOW,
        state_of_charge_status=StateOfChargeStatusType(date_time=NOW, value=10000),  # 100 %
        storage_mode_status=StorageModeStatusType(date_time=NOW - 30, value=1),
        stor_connect_status=ConnectStatusType(date_time=NOW - 60, value="1F"),
    ),
    "DERAvailability": DERAvailability(
        href=f"{BASE}/dera",
        subscribable=0,
        availability_duration=7200,
        max_charge_duration=4294967295,  # UInt32 max
        reading_time=NOW,
        reserve_charge_percent=0,
        reserve_percent=10000,
        stat_var_avail=ReactivePower(multiplier=2, value=35),
        stat_w_avail=ActivePower(multiplier=3, value=5),
    ),
}

MINIMAL = {
    "DERList": DERList(all=0, results=0),
    "DER": DER(),
    "DERCapability": DERCapability(
        modes_supported="00000000", rtg_max_w=ActivePower(multiplier=0, value=0), type=0
    ),
    "DERSettings": DERSettings(
        set_grad_w=0, set_max_w=ActivePower(multiplier=0, value=5000), updated_time=0
    ),
    "DERStatus": DERStatus(reading_time=NOW),
    "DERAvailability": DERAvailability(reading_time=NOW),
}

# The ends of the ranges the full samples do not reach.
EDGES = {
    "multiplier min, Int64 min": DERSettings(
        set_grad_w=0, set_max_w=ActivePower(multiplier=-9, value=1), updated_time=-(2**63)
    ),
    "multiplier max, Int64 max": DERSettings(
        set_grad_w=0, set_max_w=ActivePower(multiplier=9, value=1), updated_time=2**63 - 1
    ),
    "DERType max, full bitmap": DERCapability(
        modes_supported="FFFFFFFF", rtg_max_w=ActivePower(multiplier=0, value=-32768), type=255
    ),
    "UInt8 max, empty String6, UInt32 max": DERStatus(
        reading_time=0,
        inverter_status=InverterStatusType(date_time=0, value=255),
        manufacturer_status=ManufacturerStatusType(date_time=0, value=""),
        gen_connect_status=ConnectStatusType(date_time=0, value="FF"),
        alarm_status="FFFFFFFF",
    ),
    "UInt32 max list": DERList(all=4294967295, results=0, poll_rate=4294967295),
    "PowerFactor displacement max": DERCapability(
        modes_supported="01",
        rtg_max_w=ActivePower(multiplier=0, value=1),
        rtg_min_pf_over_excited=PowerFactor(displacement=65535, multiplier=-5),
        type=4,
    ),
}

SAMPLES = {
    **{f"full {k}": v for k, v in FULL.items()},
    **{f"minimal {k}": v for k, v in MINIMAL.items()},
    **{f"edge {k}": v for k, v in EDGES.items()},
}


@pytest.mark.parametrize("model", SAMPLES.values(), ids=SAMPLES.keys())
def test_round_trip(model: object) -> None:
    assert codec.parse(codec.render(model), type(model)) == model


@pytest.mark.parametrize("model", SAMPLES.values(), ids=SAMPLES.keys())
def test_rendered_documents_validate_against_official_schema(model: object, sep2_schema) -> None:
    sep2_schema(codec.render(model))


def test_samples_cover_every_resource_fully() -> None:
    """The full samples leave no optional field empty, so the tests above exercise every field."""
    for name, model in FULL.items():
        empty = [f.name for f in dataclasses.fields(model) if getattr(model, f.name) in (None, [])]
        assert empty == [], name
    assert set(FULL) == set(MINIMAL) == {cls.__name__ for cls in der.RESOURCES}


def test_required_elements_are_required_by_the_constructor_too() -> None:
    with pytest.raises(TypeError, match="set_max_w"):
        DERSettings(set_grad_w=0, updated_time=NOW)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="value"):
        ActivePower(multiplier=3)  # type: ignore[call-arg]


# --------------------------------------------------------------------------- refused on input

NS = 'xmlns="urn:ieee:std:2030.5:ns"'
W5 = "<multiplier>3</multiplier><value>5</value>"
SETTINGS_TAIL = f"<setMaxW>{W5}</setMaxW><updatedTime>0</updatedTime>"


def _doc(root: str, inner: str, attrs: str = "") -> bytes:
    return f"<{root} {NS}{attrs}>{inner}</{root}>".encode()


def _settings(before_max_w: str = "", max_w: str = W5, grad: str = "0") -> bytes:
    return _doc("DERSettings", f"<setGradW>{grad}</setGradW>{before_max_w}"
                f"<setMaxW>{max_w}</setMaxW><updatedTime>0</updatedTime>")


def _capability(modes: str = "01", der_type: str = "4", max_w: str = W5) -> bytes:
    return _doc("DERCapability", f"<modesSupported>{modes}</modesSupported>"
                f"<rtgMaxW>{max_w}</rtgMaxW><type>{der_type}</type>")


def _status(inner: str) -> bytes:
    return _doc("DERStatus", f"{inner}<readingTime>0</readingTime>")


def _status_after(inner: str) -> bytes:
    return _doc("DERStatus", f"<readingTime>0</readingTime>{inner}")


def _availability(inner: str) -> bytes:
    return _doc("DERAvailability", f"<readingTime>0</readingTime>{inner}")


BAD_VALUES = {
    "PerCent 10001": (_availability("<reservePercent>10001</reservePercent>"), DERAvailability),
    "PerCent negative": (_availability("<reserveChargePercent>-1</reserveChargePercent>"),
                         DERAvailability),
    "state of charge 10001": (
        _status_after("<stateOfChargeStatus><dateTime>0</dateTime><value>10001</value>"
                      "</stateOfChargeStatus>"), DERStatus),
    "multiplier 128": (_settings(max_w="<multiplier>128</multiplier><value>5</value>"),
                       DERSettings),
    "multiplier -129": (_settings(max_w="<multiplier>-129</multiplier><value>5</value>"),
                        DERSettings),
    "Int16 value 32768": (_settings(max_w="<multiplier>0</multiplier><value>32768</value>"),
                          DERSettings),
    "Int16 value -32769": (_capability(max_w="<multiplier>0</multiplier><value>-32769</value>"),
                           DERCapability),
    "negative ApparentPower": (
        _settings("<setMaxVA><multiplier>0</multiplier><value>-1</value></setMaxVA>"), DERSettings),
    "negative setGradW": (_settings(grad="-1"), DERSettings),
    "setGradW 65536": (_settings(grad="65536"), DERSettings),
    "Int16 setESHighVolt": (_doc("DERSettings", "<setESHighVolt>40000</setESHighVolt>"
                                f"<setGradW>0</setGradW>{SETTINGS_TAIL}"), DERSettings),
    "PowerFactor displacement 65536": (
        _settings("<setMinPFOverExcited><displacement>65536</displacement>"
                  "<multiplier>-3</multiplier></setMinPFOverExcited>", max_w=W5), DERSettings),
    "DERType 256": (_capability(der_type="256"), DERCapability),
    "modesSupported 5 bytes": (_capability(modes="0102030405"), DERCapability),
    "modesSupported not hex": (_capability(modes="0G"), DERCapability),
    "manufacturer status 7 chars": (
        _status("<manufacturerStatus><dateTime>0</dateTime><value>E-00042</value>"
                "</manufacturerStatus>"), DERStatus),
    "connect status 2 bytes": (
        _status("<genConnectStatus><dateTime>0</dateTime><value>0101</value></genConnectStatus>"),
        DERStatus),
    "inverter status 256": (
        _status("<inverterStatus><dateTime>0</dateTime><value>256</value></inverterStatus>"),
        DERStatus),
    "alarm status 5 bytes": (_status("<alarmStatus>0000000001</alarmStatus>"), DERStatus),
    "readingTime not a number": (_doc("DERStatus", "<readingTime>soon</readingTime>"), DERStatus),
    "readingTime beyond Int64": (_doc("DERStatus", f"<readingTime>{2**63}</readingTime>"),
                                 DERStatus),
    "availability duration beyond UInt32": (
        _availability("").replace(b"<readingTime>", b"<availabilityDuration>4294967296"
                                  b"</availabilityDuration><readingTime>"), DERAvailability),
    "subscribable 256": (_doc("DER", "", ' subscribable="256"'), DER),
    "list all negative": (_doc("DERList", "", ' all="-1" results="0"'), DERList),
    "list pollRate beyond UInt32": (
        _doc("DERList", "", ' all="0" results="0" pollRate="4294967296"'), DERList),
    "ListLink all negative": (
        _doc("DER", '<AssociatedDERProgramListLink href="/derp" all="-2"/>'), DER),
}

MISSING = {
    "DERSettings without setGradW": (
        _doc("DERSettings", SETTINGS_TAIL), DERSettings),
    "DERSettings without setMaxW": (
        _doc("DERSettings", "<setGradW>0</setGradW><updatedTime>0</updatedTime>"), DERSettings),
    "DERSettings without updatedTime": (
        _doc("DERSettings", f"<setGradW>0</setGradW><setMaxW>{W5}</setMaxW>"), DERSettings),
    "DERCapability without modesSupported": (
        _doc("DERCapability", f"<rtgMaxW>{W5}</rtgMaxW><type>4</type>"), DERCapability),
    "DERCapability without rtgMaxW": (
        _doc("DERCapability", "<modesSupported>01</modesSupported><type>4</type>"), DERCapability),
    "DERCapability without type": (
        _doc("DERCapability", f"<modesSupported>01</modesSupported><rtgMaxW>{W5}</rtgMaxW>"),
        DERCapability),
    "DERStatus without readingTime": (
        _doc("DERStatus", "<alarmStatus>00</alarmStatus>"), DERStatus),
    "DERAvailability without readingTime": (
        _doc("DERAvailability", "<reservePercent>5000</reservePercent>"), DERAvailability),
    "ActivePower without value": (_settings(max_w="<multiplier>3</multiplier>"), DERSettings),
    "ActivePower without multiplier": (_settings(max_w="<value>5</value>"), DERSettings),
    "PowerFactor without displacement": (
        _settings("<setMinPFOverExcited><multiplier>-3</multiplier></setMinPFOverExcited>"),
        DERSettings),
    "status without dateTime": (
        _status("<inverterStatus><value>4</value></inverterStatus>"), DERStatus),
    "status without value": (
        _status_after("<storageModeStatus><dateTime>0</dateTime></storageModeStatus>"), DERStatus),
    "link without href": (_doc("DER", "<DERStatusLink/>"), DER),
    # DERList extends List, not SubscribableList: it has no subscribable attribute.
    "DERList with subscribable": (_doc("DERList", "", ' all="0" results="0" subscribable="0"'),
                                  DERList),
}


@pytest.mark.parametrize(("body", "model"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_values_outside_their_type_are_a_values_error(body: bytes, model: type) -> None:
    with pytest.raises(DecodeError) as err:
        codec.parse(body, model)
    assert err.value.reason_code == 1


@pytest.mark.parametrize(("body", "model"), MISSING.values(), ids=MISSING.keys())
def test_missing_required_elements_are_a_format_error(body: bytes, model: type) -> None:
    with pytest.raises(DecodeError) as err:
        codec.parse(body, model)
    assert err.value.reason_code == 0


def test_the_refused_documents_are_built_on_valid_ones(sep2_schema) -> None:
    """The templates above are valid as they stand, so each refusal is due to the one change."""
    for body in (_settings(), _capability(), _status(""), _availability("")):
        sep2_schema(body)


# ---------------------------------------------------------------------------------- quantities


def test_active_power_is_value_times_ten_to_the_multiplier_watts() -> None:
    settings = DERSettings(
        set_grad_w=0, set_max_w=ActivePower(multiplier=3, value=5), updated_time=0
    )
    body = codec.render(settings)
    assert b"<setMaxW><multiplier>3</multiplier><value>5</value></setMaxW>" in body
    assert codec.parse(body, DERSettings).set_max_w.amount == 5000


@pytest.mark.parametrize(
    ("watts", "multiplier", "value"),
    [
        (0, 0, 0),
        (5000, 0, 5000),
        (32767, 0, 32767),
        (-32768, 0, -32768),
        (32768, 1, 3277),  # raise the multiplier rather than overflow Int16
        (-32769, 1, -3277),
        (40_001, 1, 4000),
        (32_785, 1, 3278),  # half to even
        (1_234_567, 2, 12346),
        (10**9, 5, 10000),
    ],
)
def test_active_power_of_watts_picks_the_smallest_multiplier_that_fits(
    watts: int, multiplier: int, value: int
) -> None:
    power = ActivePower.of(watts)
    assert (power.multiplier, power.value) == (multiplier, value)


def test_unsigned_quantities() -> None:
    assert ApparentPower.of(65535) == ApparentPower(multiplier=0, value=65535)
    assert ApparentPower.of(65536) == ApparentPower(multiplier=1, value=6554)
    with pytest.raises(ValueError, match="negative"):
        ApparentPower.of(-1)


def test_fractional_amounts() -> None:
    assert VoltageRMS(multiplier=-1, value=2401).amount == pytest.approx(240.1)
    assert PowerFactor(displacement=950, multiplier=-3).amount == pytest.approx(0.95)
    assert WattHour(multiplier=3, value=13).amount == 13_000
