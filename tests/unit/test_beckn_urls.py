"""server.beckn.urls: a callback base has one reading or is refused, and "under the registered URL"
is decided on canonical forms, by origin and whole path segments."""

from __future__ import annotations

import pytest

from server.beckn.urls import UnsafeURL, parse_base

REGISTERED = "https://bap.example.com/beckn"


@pytest.mark.parametrize("uri", [
    "https://bap.example.com/beckn/../other",
    "https://bap.example.com/beckn/./../other",
    "https://bap.example.com/beckn/%2e%2e/other",
    "https://bap.example.com/beckn/%2E%2E/other",
    "https://bap.example.com/beckn/.%2e/other",
    "https://bap.example.com/beckn/%252e%252e/other",  # double encoding
    "https://bap.example.com/beckn/..;/other",  # Tomcat's path parameter trick
    "https://bap.example.com/beckn;x=1/other",
    "https://bap.example.com/beckn%2f..%2fother",
    "https://bap.example.com/beckn%5c..%5cother",
    "https://bap.example.com/beckn\\..\\other",
    "https://bap.example.com/beckn//other",
    "https://bap.example.com//beckn",
    "https://bap.example.com/beckn/.",
    "https://bap.example.com/beckn/%zz",
    "https://bap.example.com/beckn/%ff",
    "https://bap.example.com/beckn/caf%C3%A9",
    "https://bap.example.com@evil.example/beckn",
    "https://@bap.example.com/beckn",
    "https://user:pw@bap.example.com/beckn",
    "https://bap.example.com/beckn?next=/../other",
    "https://bap.example.com/beckn?",
    "https://bap.example.com/beckn#/../other",
    "https://bap.example.com/beckn#",
    "https://bap.example.com:99999/beckn",
    "https://bap.example.com:x/beckn",
    "https://bap%2eexample.com/beckn",
    "https://bap.exämple.com/beckn",
    "https:///beckn",
    "ftp://bap.example.com/beckn",
    "//bap.example.com/beckn",
    "https://bap.example.com/be ckn",
    "https://bap.example.com/be%20ckn",  # decoded, a segment is printable ASCII without spaces
    "",
])
def test_a_base_with_more_than_one_reading_is_refused(uri: str) -> None:
    with pytest.raises(UnsafeURL):
        parse_base(uri)


@pytest.mark.parametrize(("uri", "canonical"), [
    ("https://bap.example.com/beckn", "https://bap.example.com/beckn"),
    ("https://bap.example.com/beckn/", "https://bap.example.com/beckn"),
    ("HTTPS://BAP.Example.COM/beckn", "https://bap.example.com/beckn"),
    ("https://bap.example.com:443/beckn", "https://bap.example.com/beckn"),
    ("https://bap.example.com:0443/beckn", "https://bap.example.com/beckn"),
    ("http://bap.example.com:80/beckn", "http://bap.example.com/beckn"),
    ("https://bap.example.com./beckn", "https://bap.example.com/beckn"),
    ("https://bap.example.com/be%63kn", "https://bap.example.com/beckn"),
    ("https://bap.example.com/a~b/c-d_e.f", "https://bap.example.com/a~b/c-d_e.f"),
    ("https://bap.example.com:8443/beckn", "https://bap.example.com:8443/beckn"),
    ("http://[::1]:8080/bap", "http://[::1]:8080/bap"),
    ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
])
def test_equivalent_spellings_have_one_canonical_form(uri: str, canonical: str) -> None:
    assert str(parse_base(uri)) == canonical
    assert str(parse_base(canonical)) == canonical  # canonical forms are fixed points


@pytest.mark.parametrize(("uri", "under"), [
    ("https://bap.example.com/beckn", True),
    ("https://bap.example.com/beckn/", True),
    ("https://bap.example.com/beckn/tenant-1", True),
    ("HTTPS://bap.EXAMPLE.com:443/beckn/tenant-1/", True),
    ("https://bap.example.com/%62eckn/x", True),
    ("https://bap.example.com/becknother", False),  # a prefix of the text, not of the segments
    ("https://bap.example.com/beckn-other", False),
    ("https://bap.example.com/", False),
    ("https://bap.example.com/other/beckn", False),
    ("http://bap.example.com/beckn", False),  # another scheme is another origin
    ("https://bap.example.com:8443/beckn", False),
    ("https://bap.example.com.evil.example/beckn", False),
    ("https://evil.example/beckn", False),
])
def test_under_compares_origin_and_whole_segments(uri: str, under: bool) -> None:
    assert parse_base(uri).is_under(parse_base(REGISTERED)) is under


def test_a_registered_url_with_a_trailing_slash_is_the_same_base() -> None:
    assert parse_base("https://bap.example.com/beckn/x").is_under(parse_base("https://bap.example.com/beckn/"))
    assert parse_base("https://bap.example.com/x").is_under(parse_base("https://bap.example.com/"))


def test_the_callback_goes_to_the_canonical_form() -> None:
    base = parse_base("HTTPS://BAP.example.com:443/be%63kn/")
    assert base.callback_url("on_search") == "https://bap.example.com/beckn/on_search"
