"""Pure `parse(bytes, Model) -> Model` and `render(Model) -> bytes` for 2030.5 XML.

Hostile input is refused before it costs anything: a size bound, no DTD (so no entities, internal
or external), no network, no huge trees. Both namespaces are accepted on input (the 2013 one for
old clients); only the 2018 one is emitted.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Any, TypeVar
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from server.sep2.models import NS, NS_2013
from server.sep2.types import (
    ATTR,
    CHILD,
    CHILDREN,
    ELEM,
    LINK,
    LIST_LINK,
    ListLinkValue,
    UInt32,
    WireValueError,
)

T = TypeVar("T")

DEFAULT_MAX_BYTES = 256 * 1024
_ACCEPTED_NS = (NS, NS_2013)
_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
# IEEE 2030.5-2023 puts schemaVer="2.2" on every top-level element; a 2018 server must still
# understand what such a client sends (the elements we read are the same).
_SCHEMA_VER = "schemaVer"

# 2030.5 reasonCode values for an <Error> body.
INVALID_FORMAT = 0
INVALID_VALUES = 1


class DecodeError(Exception):
    """The body cannot be accepted; `reason_code` is the 2030.5 Error reasonCode to answer with."""

    def __init__(self, message: str, reason_code: int = INVALID_FORMAT):
        super().__init__(message)
        self.reason_code = reason_code


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    name: str  # Python attribute
    xml: str
    kind: str
    xtype: Any
    required: bool


@lru_cache(maxsize=None)
def _fields(model: type) -> tuple[tuple[_Field, ...], tuple[_Field, ...]]:
    """(attributes, elements) of a model in declaration order, which is schema order."""
    attrs: list[_Field] = []
    elems: list[_Field] = []
    for f in dataclasses.fields(model):
        meta = f.metadata
        spec = _Field(f.name, meta["xml"], meta["kind"], meta["type"], meta.get("required", False))
        (attrs if spec.kind == ATTR else elems).append(spec)
    return tuple(attrs), tuple(elems)


@lru_cache(maxsize=None)
def _elements_by_xml(model: type) -> dict[str, _Field]:
    return {f.xml: f for f in _fields(model)[1]}


@lru_cache(maxsize=None)
def _attributes_by_xml(model: type) -> dict[str, _Field]:
    return {f.xml: f for f in _fields(model)[0]}


# ---------------------------------------------------------------------------------------- render


def render(obj: Any, root: str | None = None) -> bytes:
    """Render a model as a namespaced document (UTF-8, no XML declaration, as 2030.5 servers do)."""
    parts: list[str] = []
    _render(obj, root or type(obj).__name__, parts, f' xmlns="{NS}"')
    return "".join(parts).encode("utf-8")


def _render(obj: Any, tag: str, parts: list[str], extra: str = "") -> None:
    attrs, elems = _fields(type(obj))
    head = [f"<{tag}", extra]
    for f in attrs:
        value = getattr(obj, f.name)
        if value is not None:
            head.append(f" {f.xml}={quoteattr(f.xtype.render(value))}")
    body: list[str] = []
    for f in elems:
        value = getattr(obj, f.name)
        if value is None or (f.kind == CHILDREN and not value):
            continue
        if f.kind == ELEM:
            body.append(f"<{f.xml}>{escape(f.xtype.render(value))}</{f.xml}>")
        elif f.kind == LINK:
            body.append(f"<{f.xml} href={quoteattr(value)}/>")
        elif f.kind == LIST_LINK:
            count = "" if value.all is None else f' all="{UInt32.render(value.all)}"'
            body.append(f"<{f.xml} href={quoteattr(value.href)}{count}/>")
        elif f.kind == CHILD:
            _render(value, f.xml, body)
        else:  # CHILDREN
            for item in value:
                _render(item, f.xml, body)
    if body:
        parts.append("".join(head) + ">")
        parts.extend(body)
        parts.append(f"</{tag}>")
    else:
        parts.append("".join(head) + "/>")


# ----------------------------------------------------------------------------------------- parse


def _parser() -> etree.XMLParser:
    # A new parser per call: lxml parsers are not thread-safe, and construction is cheap.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse(body: bytes, model: type[T] | tuple[type[T], ...], *, max_bytes: int = DEFAULT_MAX_BYTES) -> T:
    """Parse a document whose root must be `model` (or one of several); DecodeError otherwise."""
    if len(body) > max_bytes:
        raise DecodeError(f"body larger than {max_bytes} bytes")
    if not body.strip():
        raise DecodeError("empty body")
    # Refuse document type declarations outright: they are where entity bombs and external
    # entities live, and no 2030.5 document has one.
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise DecodeError("document type declarations are not allowed")
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as exc:
        raise DecodeError(f"malformed XML: {exc.msg}") from None
    if root.getroottree().docinfo.doctype:  # one that the byte check missed (e.g. UTF-16)
        raise DecodeError("document type declarations are not allowed")
    ns, tag = _split(root.tag)
    if ns not in _ACCEPTED_NS:
        raise DecodeError(f"root element is not in the 2030.5 namespace ({ns or 'no namespace'})")
    candidates = model if isinstance(model, tuple) else (model,)
    chosen = next((m for m in candidates if m.__name__ == tag), None)
    if chosen is None:
        expected = " or ".join(m.__name__ for m in candidates)
        raise DecodeError(f"expected a {expected} document, got {tag}")
    return _from_element(root, chosen, ns, top=True)


def _split(qname: Any) -> tuple[str, str]:
    if not isinstance(qname, str):
        return "", ""
    if qname.startswith("{"):
        ns, _, local = qname[1:].partition("}")
        return ns, local
    return "", qname


def _from_element(el: Any, model: type[T], ns: str, *, top: bool = False) -> T:
    attrs_by_xml = _attributes_by_xml(model)
    elems_by_xml = _elements_by_xml(model)
    values: dict[str, Any] = {}
    for key, text in el.attrib.items():
        if key == _XSI_TYPE or (top and key == _SCHEMA_VER):
            continue
        f = attrs_by_xml.get(key)
        if f is None:
            raise DecodeError(f"unexpected attribute {key!r} on {model.__name__}")
        values[f.name] = _value(f, text)
    if el.text and el.text.strip():
        raise DecodeError(f"unexpected text in {model.__name__}")
    for sub in el:
        sub_ns, tag = _split(sub.tag)
        if sub_ns != ns:
            raise DecodeError(f"element {tag!r} is not in the document's namespace")
        f = elems_by_xml.get(tag)
        if f is None:
            raise DecodeError(f"unexpected element {tag!r} in {model.__name__}")
        if sub.tail and sub.tail.strip():
            raise DecodeError(f"unexpected text after {tag!r}")
        if f.kind == CHILDREN:
            values.setdefault(f.name, []).append(_from_element(sub, f.xtype, ns))
            continue
        if f.name in values:
            raise DecodeError(f"element {tag!r} appears more than once")
        if f.kind == ELEM:
            if len(sub):
                raise DecodeError(f"element {tag!r} must hold a simple value")
            values[f.name] = _value(f, sub.text or "")
        elif f.kind in (LINK, LIST_LINK):
            href = sub.get("href")
            if href is None:
                raise DecodeError(f"{tag} has no href")
            if f.kind == LINK:
                values[f.name] = href
            else:
                count = sub.get("all")
                values[f.name] = ListLinkValue(href, None if count is None else _int_attr(count))
        else:
            values[f.name] = _from_element(sub, f.xtype, ns)
    for f in _fields(model)[1]:
        if f.required and f.name not in values:
            raise DecodeError(f"{model.__name__} requires {f.xml}")
    return model(**values)


def _value(f: _Field, text: str) -> Any:
    try:
        return f.xtype.parse(text)
    except WireValueError as exc:
        raise DecodeError(f"{f.xml}: {exc}", INVALID_VALUES) from None


def _int_attr(text: str) -> int:
    try:
        return UInt32.parse(text)
    except WireValueError as exc:
        raise DecodeError(f"all: {exc}", INVALID_VALUES) from None
