"""The 2030.5 codec: round trips, the exact wire shape, and refusal of hostile or malformed XML."""

from __future__ import annotations

import pytest

from server.sep2 import codec
from server.sep2.codec import DecodeError
from server.sep2.models import (
    NS_2013,
    DeviceCapability,
    EndDevice,
    EndDeviceList,
    Error,
    ListLinkValue,
    Registration,
    Time,
)

LFDI = "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5"

SAMPLES = [
    DeviceCapability(href="/dcap", poll_rate=900, time_link="/tm", end_device_list_link=ListLinkValue("/edev", 3)),
    Time(href="/tm", current_time=1_700_000_000, dst_end_time=1, dst_offset=3600, dst_start_time=2,
         local_time=1_699_982_000, quality=4, tz_offset=-18000),
    EndDevice(href="/edev/1", lfdi=LFDI, sfdi=167261211391, changed_time=5, enabled=True,
              post_rate=60, registration_link="/edev/1/rg", device_category="0F"),
    EndDeviceList(href="/edev", all=2, results=1, poll_rate=300,
                  end_devices=[EndDevice(href="/edev/2", lfdi=LFDI, sfdi=167261211391, changed_time=9)]),
    Registration(href="/edev/1/rg", date_time_registered=10, pin=111115),
    Error(reason_code=1, max_retry_duration=30),
]


@pytest.mark.parametrize("model", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(model: object) -> None:
    assert codec.parse(codec.render(model), type(model)) == model


@pytest.mark.parametrize("model", SAMPLES, ids=lambda m: type(m).__name__)
def test_rendered_documents_validate_against_official_schema(model: object, sep2_schema) -> None:
    sep2_schema(codec.render(model))


def test_hex_is_rendered_upper_case() -> None:
    body = codec.render(EndDevice(lfdi=LFDI.lower(), sfdi=1, changed_time=0))
    assert f"<lFDI>{LFDI}</lFDI>".encode() in body


def test_list_attributes_and_namespace() -> None:
    body = codec.render(EndDeviceList(href="/edev", all=24, results=0))
    assert body == b'<EndDeviceList xmlns="urn:ieee:std:2030.5:ns" href="/edev" all="24" results="0"/>'


def test_2013_namespace_is_accepted_on_input() -> None:
    body = f'<EndDevice xmlns="{NS_2013}"><sFDI>5</sFDI><changedTime>0</changedTime></EndDevice>'
    assert codec.parse(body.encode(), EndDevice).sfdi == 5


def test_attribute_values_are_escaped() -> None:
    body = codec.render(DeviceCapability(href='/a"<&>'))
    assert codec.parse(body, DeviceCapability).href == '/a"<&>'


HOSTILE = {
    "billion laughs": b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
    b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>&lol2;</sFDI><changedTime>0</changedTime></EndDevice>',
    "external entity": b'<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>&xxe;</sFDI><changedTime>0</changedTime></EndDevice>',
    "bare doctype": b'<!DOCTYPE EndDevice><EndDevice xmlns="urn:ieee:std:2030.5:ns"/>',
    "undefined entity": b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>&x;</sFDI></EndDevice>',
    "truncated": b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>5</sF',
    "wrong namespace": b'<EndDevice xmlns="urn:example"><sFDI>5</sFDI><changedTime>0</changedTime></EndDevice>',
    "no namespace": b"<EndDevice><sFDI>5</sFDI><changedTime>0</changedTime></EndDevice>",
    "wrong root": b'<Time xmlns="urn:ieee:std:2030.5:ns"/>',
    "empty": b"",
    "not xml": b"{\"sFDI\": 5}",
    "unknown element": b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>5</sFDI><changedTime>0</changedTime><evil/></EndDevice>',
    "unknown attribute": b'<EndDevice xmlns="urn:ieee:std:2030.5:ns" evil="1"><sFDI>5</sFDI><changedTime>0</changedTime></EndDevice>',
    "missing required": b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><changedTime>0</changedTime></EndDevice>',
    "duplicate element": b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>5</sFDI><sFDI>6</sFDI><changedTime>0</changedTime></EndDevice>',
    "nested in simple": b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI><a/></sFDI><changedTime>0</changedTime></EndDevice>',
    "stray text": b'<EndDevice xmlns="urn:ieee:std:2030.5:ns">hi<sFDI>5</sFDI><changedTime>0</changedTime></EndDevice>',
}

BAD_VALUES = {
    "sfdi not a number": b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>five</sFDI><changedTime>0</changedTime></EndDevice>',
    "sfdi too large": b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>687194767360</sFDI><changedTime>0</changedTime></EndDevice>',
    "negative uint": b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>-1</sFDI><changedTime>0</changedTime></EndDevice>',
    "lfdi not hex": b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><lFDI>ZZ</lFDI><sFDI>5</sFDI><changedTime>0</changedTime></EndDevice>',
    "lfdi too long": b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><lFDI>' + b"AB" * 21 + b"</lFDI><sFDI>5</sFDI><changedTime>0</changedTime></EndDevice>",
    "bad boolean": b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>5</sFDI><changedTime>0</changedTime><enabled>yes</enabled></EndDevice>',
    "time overflow": b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>5</sFDI><changedTime>99999999999999999999</changedTime></EndDevice>',
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_or_malformed_xml_is_a_format_error(body: bytes) -> None:
    with pytest.raises(DecodeError) as err:
        codec.parse(body, EndDevice)
    assert err.value.reason_code == 0


@pytest.mark.parametrize("body", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_values_outside_their_type_are_a_values_error(body: bytes) -> None:
    with pytest.raises(DecodeError) as err:
        codec.parse(body, EndDevice)
    assert err.value.reason_code == 1


def test_oversize_body_is_refused_before_parsing() -> None:
    body = b'<EndDevice xmlns="urn:ieee:std:2030.5:ns">' + b" " * 300_000 + b"</EndDevice>"
    with pytest.raises(DecodeError, match="larger than"):
        codec.parse(body, EndDevice, max_bytes=256 * 1024)


def test_deep_nesting_is_refused() -> None:
    body = b'<EndDevice xmlns="urn:ieee:std:2030.5:ns">' + b"<a>" * 10_000 + b"</a>" * 10_000 + b"</EndDevice>"
    with pytest.raises(DecodeError):
        codec.parse(body, EndDevice, max_bytes=10**6)


def test_doctype_in_another_encoding_is_refused_too() -> None:
    body = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE EndDevice><EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>1</sFDI><changedTime>0</changedTime></EndDevice>'
    with pytest.raises(DecodeError, match="document type"):
        codec.parse(body.encode("utf-16"), EndDevice)


@pytest.mark.parametrize("text", ["1_0", "١٠", "0x10", "1e3", ""])
def test_integers_take_only_the_xsd_lexical_form(text: str) -> None:
    body = f'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>{text}</sFDI><changedTime>0</changedTime></EndDevice>'
    with pytest.raises(DecodeError):
        codec.parse(body.encode(), EndDevice)


@pytest.mark.parametrize("text", ["00 00 01", "0x0A", "0", "ABC"])
def test_hex_takes_only_the_xsd_lexical_form(text: str) -> None:
    body = f'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><deviceCategory>{text}</deviceCategory><sFDI>1</sFDI><changedTime>0</changedTime></EndDevice>'
    with pytest.raises(DecodeError):
        codec.parse(body.encode(), EndDevice)


def test_2023_schema_version_attribute_is_accepted_on_the_root_only() -> None:
    """IEEE 2030.5-2023 clients put schemaVer="2.2" on every top-level element."""
    body = b'<EndDevice xmlns="urn:ieee:std:2030.5:ns" schemaVer="2.2"><sFDI>5</sFDI><changedTime>0</changedTime></EndDevice>'
    assert codec.parse(body, EndDevice).sfdi == 5
    nested = b'<EndDeviceList xmlns="urn:ieee:std:2030.5:ns" all="1" results="1"><EndDevice schemaVer="2.2"><sFDI>5</sFDI><changedTime>0</changedTime></EndDevice></EndDeviceList>'
    with pytest.raises(DecodeError):
        codec.parse(nested, EndDeviceList)
