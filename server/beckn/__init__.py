"""Beckn v1.1.0 wire format: safe JSON, the request context, ACK/NACK envelopes, BECKN-006 signing.

Pure and typed: bytes and plain values in, typed values or bytes out; time (`now`) is always a
parameter. Imports nothing else of the project and no web or database library (checked by
import-linter). Every refusal is an exception that says what to answer: `codec.JsonError`,
`context.ContextError` and `envelope.EnvelopeError` carry a v1 error code and the failing JSON path
for a NACK; `signing.SignatureError` subclasses carry a `reason` for the 401 NACK.

Modules: `codec` (bounded JSON parse/render), `timefmt` (RFC 3339 timestamps, ISO 8601 durations),
`context` (the typed Context, its validation and the callback contexts), `envelope` (error codes,
ACK/NACK, request envelopes), `signing` (BLAKE2b-512 digest, Ed25519, the Authorization header).
Another Beckn generation (v2) would be a sibling package, not a flag in these modules.
"""
