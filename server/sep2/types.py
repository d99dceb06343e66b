"""Simple types of the 2030.5 schema and the field declarations that models are built from.

A model is a keyword-only dataclass whose fields say, in schema order, how they appear on the wire:
`attr(...)` for XML attributes, `elem(...)` for simple-content child elements, `link(...)` for
`…Link` elements, `child(...)`/`children(...)` for nested resources. The codec walks these
declarations, so a new resource is a new dataclass, not new parsing code.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any


_INTEGER = re.compile(r"[+-]?[0-9]{1,40}")  # xs:integer's lexical space (int() also takes "1_0", "١٠")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*")  # xs:hexBinary (bytes.fromhex also takes spaces)


class WireValueError(ValueError):
    """A value on the wire does not fit its schema type (the codec turns it into reasonCode 1)."""


@dataclass(frozen=True, slots=True)
class IntType:
    name: str
    lo: int
    hi: int

    def parse(self, text: str) -> int:
        text = text.strip()
        if not _INTEGER.fullmatch(text):
            raise WireValueError(f"{text[:40]!r} is not an integer")
        value = int(text, 10)
        if not self.lo <= value <= self.hi:
            raise WireValueError(f"{value} is outside {self.name} ({self.lo}…{self.hi})")
        return value

    def render(self, value: int) -> str:
        if not self.lo <= value <= self.hi:
            raise WireValueError(f"{value} is outside {self.name} ({self.lo}…{self.hi})")
        return str(value)


@dataclass(frozen=True, slots=True)
class HexType:
    """xs:hexBinary of at most `max_bytes` bytes, rendered upper case (2030.5 convention)."""

    name: str
    max_bytes: int

    def parse(self, text: str) -> str:
        text = text.strip()
        if len(text) > 2 * self.max_bytes:
            raise WireValueError(f"{self.name} must be at most {self.max_bytes} bytes of hex")
        if not _HEX.fullmatch(text):
            raise WireValueError(f"{text[:40]!r} is not hexadecimal")
        return text.upper()

    def render(self, value: str) -> str:
        return self.parse(value)


@dataclass(frozen=True, slots=True)
class BoolType:
    name: str = "xs:boolean"

    def parse(self, text: str) -> bool:
        text = text.strip()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise WireValueError(f"{text[:40]!r} is not a boolean")

    def render(self, value: bool) -> str:
        return "true" if value else "false"


@dataclass(frozen=True, slots=True)
class StringType:
    name: str
    max_len: int

    def parse(self, text: str) -> str:
        if len(text) > self.max_len:
            raise WireValueError(f"text longer than {self.max_len} characters for {self.name}")
        return text

    def render(self, value: str) -> str:
        return self.parse(value)


def _uint(bits: int) -> IntType:
    return IntType(f"UInt{bits}", 0, 2**bits - 1)


def _int(bits: int) -> IntType:
    return IntType(f"Int{bits}", -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


# Each range is the 2018 schema's (sep2_schema_2018.xsd), checked type by type; where the
# schema's facet and its annotation disagree, the note says which one is enforced and why.
UInt8, UInt16, UInt32, UInt40, UInt48, UInt64 = (_uint(b) for b in (8, 16, 32, 40, 48, 64))
# UInt40's facet says maxInclusive 281474976710655 (2^48-1, a copy of UInt48's); its annotation
# and name say 2^40-1. No element of ours is a bare UInt40 (SFDIType has its own range).
Int8, Int16, Int32, Int64 = (_int(b) for b in (8, 16, 32, 64))
# Int48: the schema's facets are -2^47…+2^47 (one more than a two's-complement int48 holds);
# a value the schema validates is accepted.
Int48 = IntType("Int48", -(2**47), 2**47)
TimeType = IntType("TimeType", Int64.lo, Int64.hi)
TimeOffsetType = IntType("TimeOffsetType", Int32.lo, Int32.hi)
SFDIType = IntType("SFDIType", 0, 687194767359)
# UInt32 in the schema; its annotation: "6 digit unsigned decimal integer (0 - 999999)".
PINType = IntType("PINType", 0, 999_999)
VersionType = UInt16
HexBinary8 = HexType("HexBinary8", 1)
HexBinary32 = HexType("HexBinary32", 4)
HexBinary128 = HexType("HexBinary128", 16)
HexBinary160 = HexType("HexBinary160", 20)
MRIDType = HexType("mRIDType", 16)
Boolean = BoolType()
String32 = StringType("String32", 32)
String6 = StringType("String6", 6)
String192 = StringType("String192", 192)
# Hundredths of a percent. The schema declares a bare UInt16; the 0…10000 range is in its
# annotation ("10000 = 100%"), and more than 100 % is meaningless, so it is enforced.
PerCent = IntType("PerCent", 0, 10_000)
SignedPerCent = IntType("SignedPerCent", -10_000, 10_000)
OneHourRangeType = IntType("OneHourRangeType", -3600, 3600)
PrimacyType = UInt8
# Int8 in the schema; its annotation: "Any integer between -9 and 9 SHALL be supported". Nothing
# outside is meaningful (10^127 W) and a peer need not support it, so −9…9 is the range.
PowerOfTenMultiplierType = IntType("PowerOfTenMultiplierType", -9, 9)
AnyURI = StringType("xs:anyURI", 2048)

# Field kinds
ATTR, ELEM, LINK, LIST_LINK, CHILD, CHILDREN = "attr", "elem", "link", "listlink", "child", "children"


# Extension elements (IEEE 2030.5-2018 §11.4: never in the 2030.5 namespace) are declared with
# `ns=` their own namespace; the codec reads them wherever they stand among the 2030.5 elements
# and writes them, prefixed, after them. Undeclared ones of a foreign namespace are ignored.
CSIPAUS_NS = "https://csipaus.org/ns"
EXTENSION_PREFIXES = {CSIPAUS_NS: "csipaus"}


def attr(xml: str, xtype: Any, *, default: Any = None) -> Any:
    return dataclasses.field(default=default, metadata={"xml": xml, "kind": ATTR, "type": xtype})


def elem(xml: str, xtype: Any, *, default: Any = None, required: bool = False, ns: str | None = None) -> Any:
    meta = {"xml": xml, "kind": ELEM, "type": xtype, "required": required, "ns": ns}
    return dataclasses.field(default=default, metadata=meta)


def link(xml: str, *, list_link: bool = False, ns: str | None = None) -> Any:
    """A `…Link` element; the value is an href string (or a ListLinkValue for list links)."""
    kind = LIST_LINK if list_link else LINK
    return dataclasses.field(default=None, metadata={"xml": xml, "kind": kind, "type": None, "ns": ns})


def child(xml: str, model: type, *, required: bool = False, ns: str | None = None) -> Any:
    meta = {"xml": xml, "kind": CHILD, "type": model, "required": required, "ns": ns}
    return dataclasses.field(default=None, metadata=meta)


def required(field: Any) -> Any:
    """Drop the default of a field declared with required=True, so the constructor must get it
    (a model cannot then be built into a document the schema refuses)."""
    field.default = dataclasses.MISSING
    return field


def children(xml: str, model: type, *, ns: str | None = None) -> Any:
    meta = {"xml": xml, "kind": CHILDREN, "type": model, "ns": ns}
    return dataclasses.field(default_factory=list, metadata=meta)


@dataclass(frozen=True, slots=True)
class ListLinkValue:
    """A ListLink: where the list is and, optionally, how many entries it holds (`all`)."""

    href: str
    all: int | None = None
