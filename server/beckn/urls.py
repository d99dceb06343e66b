"""Callback URLs: one canonical form, so "does this bap_uri lie under the BAP's registered URL?"
is asked of what will actually be called, not of a string a server would read differently.

A callback base (`bap_uri`, a registry entry's `url`) is accepted only when it has exactly one
reading; everything a server, proxy or client library might resolve differently is refused:

* printable ASCII only (no spaces, no backslashes, no control or non-ASCII characters);
* scheme http or https, a host, no userinfo (not even an empty `@`), no query, no fragment (not
  even an empty `?` or `#`), a port that is a number in range;
* every path segment, percent-decoded, is not `.` or `..` and holds no `/`, `\\`, `;` or `%`
  (so `%2e%2e`, `%2F`, `..;` and double encodings are refused), and no segment is empty but a
  single trailing one (`//` is refused: some servers merge slashes, others do not); a `%` must
  start a valid escape.

The canonical form: scheme and host in lower case (a trailing dot of the host dropped), the
scheme's default port left out, each path segment decoded and re-encoded the one way
(`quote(segment, safe=SAFE)`), no trailing slash. Two bases name the same place exactly when their
canonical forms are equal; `under(uri, registered)` holds when the origins are equal and the
registered path's segments are a prefix of the uri's, segment by segment (so `/beckn-other` is not
under `/beckn`). The callback for action `a` goes to `canonical(bap_uri) + "/" + a`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
SAFE = "-._~!$&'()*+,=:@"  # pchar without ";" and "%" (RFC 3986 unreserved + sub-delims + ":@")
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_HOST = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*|\[[0-9a-f:.]+\]")


class UnsafeURL(ValueError):
    """A URL with more than one reading (or none): the message says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class CallbackBase:
    """A callback base in canonical form: origin and decoded path segments."""

    scheme: str
    host: str  # lower case; IPv6 in brackets
    port: int | None  # None: the scheme's default
    segments: tuple[str, ...]  # decoded, none empty

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}" + (f":{self.port}" if self.port is not None else "")

    def __str__(self) -> str:
        return self.origin + "".join("/" + quote(s, safe=SAFE) for s in self.segments)

    def is_under(self, registered: CallbackBase) -> bool:
        """Same origin, and `registered`'s path segments are a prefix of ours."""
        n = len(registered.segments)
        return (self.scheme, self.host, self.port) == (registered.scheme, registered.host, registered.port) \
            and self.segments[:n] == registered.segments

    def callback_url(self, action: str) -> str:
        """Where the callback `action` (on_search, …) goes."""
        return f"{self}/{quote(action, safe=SAFE)}"


def parse_base(value: str) -> CallbackBase:
    """The canonical form of a callback base; UnsafeURL when it has more than one reading."""
    if not isinstance(value, str) or not value:
        raise UnsafeURL("is empty")
    if not _PRINTABLE_ASCII.fullmatch(value):
        raise UnsafeURL("must be printable ASCII without spaces")
    if "\\" in value:
        raise UnsafeURL("must not contain a backslash")
    if "?" in value:
        raise UnsafeURL("must not carry a query")
    if "#" in value:
        raise UnsafeURL("must not carry a fragment")
    if _BAD_ESCAPE.search(value):
        raise UnsafeURL("has a % that does not start an escape")
    try:
        parts = urlsplit(value)
        port = parts.port  # ValueError for a port that is not a number in range
    except ValueError:
        raise UnsafeURL("is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise UnsafeURL("must be an http or https URL")
    if "@" in parts.netloc:
        raise UnsafeURL("must not carry credentials")
    host = (parts.hostname or "").rstrip(".")
    if not host or not _HOST.fullmatch(host if ":" not in host else f"[{host}]"):
        raise UnsafeURL("must name a host (a DNS name or an IP address)")
    if ":" in host:
        host = f"[{host}]"
    if port == DEFAULT_PORTS[scheme]:
        port = None
    raw = parts.path.split("/")
    if raw[0] != "":
        raise UnsafeURL("is not an absolute URL")
    raw = raw[1:]
    if raw and raw[-1] == "":
        raw = raw[:-1]  # one trailing slash: the same base
    segments = []
    for segment in raw:
        if segment == "":
            raise UnsafeURL("must not contain an empty path segment (//)")
        try:
            decoded = unquote(segment, errors="strict")
        except UnicodeDecodeError:
            raise UnsafeURL(f"path segment {segment[:40]!r} is not UTF-8 once decoded") from None
        if decoded in (".", "..") or any(c in decoded for c in "/\\;%") or not _PRINTABLE_ASCII.fullmatch(decoded):
            raise UnsafeURL(f"path segment {segment[:40]!r} is a dot segment, hides a separator or is not ASCII")
        segments.append(decoded)
    return CallbackBase(scheme, host, port, tuple(segments))
