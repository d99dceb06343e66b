"""Beckn v2.0.0 LTS wire format, beside v1.1.0 (`server.beckn`): a second adapter, not a flag.

Pure and typed like v1: bytes and plain values in, typed values or bytes out; `now` is always a
parameter. It imports nothing of the project but the v1 wire package, whose bounded JSON codec,
timestamps, callback-URL rules and BECKN-006 signing are unchanged in v2 (import-linter checks it).

Modules: `errors` (the v2 error codes, `{errorCode, errorMessage}`, the HTTP status of each refusal),
`context` (the camelCase Context in both shapes the LTS tag and its release branch allow, callback
contexts), `envelope` (requests, the Ack with its CounterSignature, NACKs, callbacks), `packs`
(the JSON-LD attribute packs we serve: @context/@type, DemandFlexNeed, DemandFlexBuyOffer,
DEGContract, TimeSeries, DemandFlexPerformance, RevenueFlow, SettlementTerm), `contracts` (the
Contract / Commitment / Consideration / Performance / Settlement status codes).
"""
