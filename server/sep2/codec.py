"""Pure `parse(bytes, Model) -> Model` and `render(Model) -> bytes` for 2030.5 XML.

Hostile input is refused before it costs anything: a size bound, no DTD (so no entities, internal
or external), no network, no huge trees. Both namespaces are accepted on input (the 2013 one for
old clients, and `schemaVer` on the root as IEEE 2030.5-2023 clients send it); only the 2018 one
is emitted.

What an inbound document must obey (xsd/README.md says why this strict and no stricter):
- the root is the expected resource, in a 2030.5 namespace; every element of the 2030.5
  namespace is one the model declares, at most once unless a list, **in schema order**, with
  simple content where the schema has a simple type and none where it has a complex one;
- every attribute is one the model declares (unqualified, as the schema's are); `xsi:type`
  and `xsi:schemaLocation` are tolerated, and so is any attribute of a foreign namespace;
- every value lies in its simple type's lexical space and range (server/sep2/types.py);
- elements of a foreign namespace (extensions, IEEE 2030.5-2018 §11.4) are read where the model
  declares them (`ns=`) and otherwise ignored, subtree and all: the standard says a proprietary
  extension "SHALL be able to be ignored". They may stand anywhere among the 2030.5 elements;
  the order check is about the 2030.5 ones.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Any, TypeVar
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from server.sep2.models import NS, NS_2013
from server.sep2.types import (
    EXTENSION_PREFIXES,
    ATTR,
    CHILD,
    CHILDREN,
    ELEM,
    LINK,
    LIST_LINK,
    AnyURI,
    ListLinkValue,
    UInt32,
    WireValueError,
)

T = TypeVar("T")

DEFAULT_MAX_BYTES = 256 * 1024
_ACCEPTED_NS = (NS, NS_2013)
_XSI = "{http://www.w3.org/2001/XMLSchema-instance}"
_XSI_TOLERATED = frozenset({_XSI + "type", _XSI + "schemaLocation", _XSI + "noNamespaceSchemaLocation"})
_SEP2_PREFIXES = tuple("{" + ns + "}" for ns in _ACCEPTED_NS)
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
    xml: str  # local name
    kind: str
    xtype: Any
    required: bool
    ns: str | None  # None: the document's (2030.5) namespace; else an extension's
    index: int  # position among the model's elements: schema order


@lru_cache(maxsize=None)
def _fields(model: type) -> tuple[tuple[_Field, ...], tuple[_Field, ...]]:
    """(attributes, elements) of a model in declaration order, which is schema order."""
    attrs: list[_Field] = []
    elems: list[_Field] = []
    for f in dataclasses.fields(model):
        meta = f.metadata
        xml, ns = meta["xml"], meta.get("ns")
        if xml.startswith("{"):  # a Clark name declares an extension element too
            ns, _, xml = xml[1:].partition("}")
        spec = _Field(f.name, xml, meta["kind"], meta["type"], meta.get("required", False), ns,
                      len(elems))
        (attrs if spec.kind == ATTR else elems).append(spec)
    return tuple(attrs), tuple(elems)


@lru_cache(maxsize=None)
def _elements_by_xml(model: type) -> dict[str, _Field]:
    """The model's 2030.5 elements by local name."""
    return {f.xml: f for f in _fields(model)[1] if f.ns is None}


@lru_cache(maxsize=None)
def _extensions_by_tag(model: type) -> dict[str, _Field]:
    """The model's extension elements by Clark name (`{ns}local`)."""
    return {f"{{{f.ns}}}{f.xml}": f for f in _fields(model)[1] if f.ns is not None}


@lru_cache(maxsize=None)
def _attributes_by_xml(model: type) -> dict[str, _Field]:
    return {f.xml: f for f in _fields(model)[0]}


# ---------------------------------------------------------------------------------------- render


def render(obj: Any, root: str | None = None) -> bytes:
    """Render a model as a namespaced document (UTF-8, no XML declaration, as 2030.5 servers do).
    A model whose root element belongs to an extension's namespace (`XML_NS`, e.g.
    csipaus:ConnectionPoint) is written with that namespace's prefix."""
    parts: list[str] = []
    tag, decl = root or type(obj).__name__, f' xmlns="{NS}"'
    root_ns = getattr(type(obj), "XML_NS", None)
    if root_ns is not None:
        prefix = EXTENSION_PREFIXES.get(root_ns, "ext")
        tag, decl = f"{prefix}:{tag}", f"{decl} xmlns:{prefix}={quoteattr(root_ns)}"
    _render(obj, tag, parts, decl)
    return "".join(parts).encode("utf-8")


def _render(obj: Any, tag: str, parts: list[str], extra: str = "") -> None:
    attrs, elems = _fields(type(obj))
    head = [f"<{tag}", extra]
    for f in attrs:
        value = getattr(obj, f.name)
        if value is not None:
            head.append(f" {f.xml}={quoteattr(f.xtype.render(value))}")
    body: list[str] = []
    for f in elems if not _has_extensions(type(obj)) else _extensions_last(type(obj)):
        value = getattr(obj, f.name)
        if value is None or (f.kind == CHILDREN and not value):
            continue
        name, decl = f.xml, ""
        if f.ns is not None:
            prefix = EXTENSION_PREFIXES.get(f.ns, "ext")
            name, decl = f"{prefix}:{f.xml}", f" xmlns:{prefix}={quoteattr(f.ns)}"
        if f.kind == ELEM:
            body.append(f"<{name}{decl}>{escape(f.xtype.render(value))}</{name}>")
        elif f.kind == LINK:
            body.append(f"<{name}{decl} href={quoteattr(value)}/>")
        elif f.kind == LIST_LINK:
            count = "" if value.all is None else f' all="{UInt32.render(value.all)}"'
            body.append(f"<{name}{decl} href={quoteattr(value.href)}{count}/>")
        elif f.kind == CHILD:
            _render(value, name, body, decl)
        else:  # CHILDREN
            for item in value:
                _render(item, name, body, decl)
    if body:
        parts.append("".join(head) + ">")
        parts.extend(body)
        parts.append(f"</{tag}>")
    else:
        parts.append("".join(head) + "/>")


@lru_cache(maxsize=None)
def _has_extensions(model: type) -> bool:
    return any(f.ns is not None for f in _fields(model)[1])


@lru_cache(maxsize=None)
def _extensions_last(model: type) -> tuple[_Field, ...]:
    elems = _fields(model)[1]
    return tuple(f for f in elems if f.ns is None) + tuple(f for f in elems if f.ns is not None)


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
    candidates = model if isinstance(model, tuple) else (model,)
    # a root of an extension's namespace (csipaus:ConnectionPoint) only where the model says so;
    # its 2030.5 children would then be in the 2018 namespace
    extension_root = next((m for m in candidates if getattr(m, "XML_NS", None) == ns and ns), None)
    if ns not in _ACCEPTED_NS and extension_root is None:
        raise DecodeError(f"root element is not in the 2030.5 namespace ({ns or 'no namespace'})")
    chosen = next(
        (m for m in candidates if m.__name__ == tag and getattr(m, "XML_NS", None) == (ns if extension_root else None)),
        None,
    )
    if chosen is None:
        expected = " or ".join(m.__name__ for m in candidates)
        named = next((m for m in candidates if m.__name__ == tag), None)
        if named is not None:  # the right name in the wrong namespace
            raise DecodeError(f"{tag} belongs to the namespace {getattr(named, 'XML_NS', NS)}")
        raise DecodeError(f"expected a {expected} document, got {tag}")
    return _from_element(root, chosen, NS if extension_root else ns, top=True)


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
        f = attrs_by_xml.get(key)
        if f is None:
            if _ignorable_attribute(key, top):
                continue
            raise DecodeError(f"unexpected attribute {key!r} on {model.__name__}")
        values[f.name] = _value(f, text)
    if el.text and el.text.strip():
        raise DecodeError(f"unexpected text in {model.__name__}")
    prefix = "{" + ns + "}"
    last = -1  # index of the previous 2030.5 element: they must come in schema order
    for sub in el:
        tag = sub.tag
        if sub.tail and sub.tail.strip():
            raise DecodeError(f"unexpected text in {model.__name__}")
        if isinstance(tag, str) and tag.startswith(prefix):
            tag = tag[len(prefix):]
            f = elems_by_xml.get(tag)
            if f is None:
                raise DecodeError(f"unexpected element {tag!r} in {model.__name__}")
            if f.index < last:
                raise DecodeError(f"element {tag!r} is out of schema order in {model.__name__}")
            last = f.index
        else:
            f = _extension(model, tag)
            if f is None:
                continue  # a foreign extension we do not know: ignored, as §11.4 allows
        if f.kind == CHILDREN:
            values.setdefault(f.name, []).append(_from_element(sub, f.xtype, ns))
            continue
        if f.name in values:
            raise DecodeError(f"element {f.xml!r} appears more than once")
        if f.kind == ELEM:
            if len(sub):
                raise DecodeError(f"element {f.xml!r} must hold a simple value")
            if sub.attrib and not all(_ignorable_attribute(k, False) for k in sub.attrib):
                raise DecodeError(f"element {f.xml!r} takes no attributes")
            values[f.name] = _value(f, sub.text or "")
        elif f.kind in (LINK, LIST_LINK):
            values[f.name] = _link(sub, f)
        else:
            values[f.name] = _from_element(sub, f.xtype, ns)
    for f in _fields(model)[1]:
        if f.required and f.name not in values:
            raise DecodeError(f"{model.__name__} requires {f.xml}")
    return model(**values)


def _extension(model: type, tag: Any) -> _Field | None:
    """The declared extension element `tag` of `model`, None for one to ignore; DecodeError for
    what is not an extension at all (the other 2030.5 namespace, no namespace)."""
    if not isinstance(tag, str) or not tag.startswith("{"):
        raise DecodeError(f"element {_split(tag)[1]!r} is not in the document's namespace")
    if tag.startswith(_SEP2_PREFIXES):
        raise DecodeError(f"element {_split(tag)[1]!r} is not in the document's namespace")
    return _extensions_by_tag(model).get(tag)


def _ignorable_attribute(key: str, top: bool) -> bool:
    """`schemaVer` on the root (2030.5-2023), xsi:type/schemaLocation, and attributes of a foreign
    namespace (extensions) are let through; the schema's own attributes are unqualified."""
    if top and key == _SCHEMA_VER:
        return True
    if not key.startswith("{"):
        return False
    if key.startswith(_XSI):
        return key in _XSI_TOLERATED
    return not key.startswith(_SEP2_PREFIXES)


def _link(sub: Any, f: _Field) -> Any:
    href = None
    count = None
    for key, text in sub.attrib.items():
        if key == "href":
            href = text
        elif key == "all" and f.kind == LIST_LINK:
            count = _int_attr(text)
        elif not _ignorable_attribute(key, False):
            raise DecodeError(f"unexpected attribute {key!r} on {f.xml}")
    if href is None:
        raise DecodeError(f"{f.xml} has no href")
    if len(sub):
        raise DecodeError(f"{f.xml} takes no elements")
    if sub.text and sub.text.strip():
        raise DecodeError(f"unexpected text in {f.xml}")
    if len(href) > AnyURI.max_len:
        raise DecodeError(f"{f.xml}: href longer than {AnyURI.max_len} characters", INVALID_VALUES)
    return href if f.kind == LINK else ListLinkValue(href, count)


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
