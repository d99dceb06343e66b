"""Our Beckn v2.0.0 LTS BAP: the app side of the DEG demand-flexibility devkits against our BPP.

Beside the v1.1.0 `der_sim.bap` and sharing its identity (`BapIdentity`: the same BECKN-006 key)
and its callback receiver (`der_sim.bap_receiver.CallbackReceiver` started with `v2_key`, which
answers with counter-signed v2 Acks). Every wire rule comes from `server.beckn_v2` (context,
Ack counter-signature, TimeSeries packs) and `server.beckn` (signing, canonical bytes).

* Messages (pure): `contract_message` (a Contract naming the program's Resource `program-{id}` and
  Offer `offer-program-{id}`, the seller's participating meters, a block bid curve as the
  devkit's TimeSeries OFFER_PRICE/CAPACITY_OFFERED per interval), `cleared` (CAPACITY_CLEARED /
  CLEARING_PRICE per interval of an on_confirm), `revenue_flows`, `performance`.
* `BapV2Client`: one signed POST to `{bppUri}/{action}` (bppUri = the BPP's v2 base), the Ack read
  and, when the BPP's key is known, its counter-signature verified (`BapV2Nack` otherwise).
* `BapV2`: request + wait for its callback (a callback with `error` raises `BapV2CallbackError`
  naming errorCode and errorMessage); the flows `discover`, `select`, `init`, `confirm`, `enroll`
  (select → init → confirm with a bid), `update` (opt-in / new bid), `status`, `cancel`, and
  `wait_push` for unsolicited on_status.

Standard library HTTP only; no redirects, no environment proxies; every wait bounded.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from server.beckn import codec, signing
from server.beckn.timefmt import render_timestamp
from server.beckn_v2 import envelope, packs
from server.beckn_v2.context import CALLBACK_ACTIONS, VERSION
from der_sim.bap import BapError, BapIdentity, BapNetworkError, BapTimeout, _NoRedirect
from der_sim.bap_receiver import CallbackReceiver, CallbackTimeout

__all__ = ["BapV2", "BapV2CallbackError", "BapV2Client", "BapV2Nack", "Bid", "ReplyV2", "cleared",
           "contract_message", "performance", "revenue_flows"]

MAX_ANSWER_BYTES = 1024 * 1024
NETWORK_ID = "nfh.global/testnet-deg"

#: one interval's block bid: (OFFER_PRICE per block, CAPACITY_OFFERED kW per block)
Bid = Sequence[tuple[Sequence[float], Sequence[float]]]


# ------------------------------------------------------------------------------------- messages


def bid_series(bid: Bid, *, start: str, duration: str, currency: str) -> dict[str, Any]:
    """The commitmentAttributes TimeSeries of a block bid (the devkit's uc2 shape)."""
    return packs.attrs("TimeSeries", packs.series_body(
        start, duration,
        [("EVENT_PAYLOAD_DESCRIPTOR", "OFFER_PRICE", f"{currency}_PER_KWH", "seller"),
         ("EVENT_PAYLOAD_DESCRIPTOR", "CAPACITY_OFFERED", "KW", "seller")],
        [{"OFFER_PRICE": list(p), "CAPACITY_OFFERED": list(q)} for p, q in bid]))


def contract_message(program_id: int, *, meters: Sequence[str] | None, seller: str, bid: Bid | None = None,
                     contract_id: str | None = None, capacity_kw: float | None = None,
                     period: tuple[str, str] = ("2026-01-01T00:00:00Z", "PT1H"),
                     currency: str = "USD", resource_types: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`{"contract": …}` for select/init/confirm/update: one commitment on the program's Resource
    and Offer; `meters` (LFDIs or DIDs ending in one; None: not given) as the seller's
    participatingMeters; `resource_types` (meter -> DEG EnergyResource type: BESS, EV_CHARGER,
    CONTROLLABLE_LOAD …) as the seller's energyResources; `bid` per interval as the commitment's
    TimeSeries (`period`: the resource's intervalPeriod (start, duration), as the catalog gives it)."""
    resource: dict[str, Any] = {"id": f"program-{program_id}"}
    if capacity_kw is not None:
        resource["quantity"] = {"unitCode": "kW", "unitQuantity": capacity_kw}
    seller_inputs: dict[str, Any] = {}
    if meters is not None:
        seller_inputs["participatingMeters"] = list(meters)
    if resource_types:
        seller_inputs["energyResources"] = [{"meterId": m, "type": t} for m, t in resource_types.items()]
    commitment: dict[str, Any] = {
        "id": f"commitment-{program_id}", "status": {"descriptor": {"code": "DRAFT"}}, "resources": [resource],
        "offer": {"id": f"offer-program-{program_id}", "resourceIds": [f"program-{program_id}"],
                  "offerAttributes": packs.attrs("DemandFlexBuyOffer", {"inputs": [
                      {"role": "seller", "participantId": seller, "inputs": seller_inputs}]})}}
    if bid is not None:
        commitment["commitmentAttributes"] = bid_series(bid, start=period[0], duration=period[1], currency=currency)
    contract: dict[str, Any] = {"commitments": [commitment]}
    if contract_id is not None:
        contract = {"id": contract_id, **contract}
    return {"contract": contract}


def _series(contract: Mapping[str, Any]) -> packs.Series | None:
    attrs = (contract.get("commitments") or [{}])[0].get("commitmentAttributes")
    return packs.read_series(attrs, "commitmentAttributes") if attrs else None


def cleared(contract: Mapping[str, Any]) -> list[tuple[float, float]]:
    """(CAPACITY_CLEARED kW, CLEARING_PRICE) per interval of an answered contract ([] if none)."""
    series = _series(contract)
    if series is None:
        return []
    return [(iv["CAPACITY_CLEARED"][0], iv["CLEARING_PRICE"][0]) for iv in series.intervals if "CAPACITY_CLEARED" in iv]


def revenue_flows(contract: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The DEGContract revenueFlows of a settled contract ([] before settlement)."""
    return list((contract.get("contractAttributes") or {}).get("revenueFlows") or [])


def performance(contract: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The DemandFlexPerformance bodies of a contract's performance[]."""
    return [p.get("performanceAttributes") or {} for p in contract.get("performance") or []]


# --------------------------------------------------------------------------------------- client


class BapV2Nack(BapError):
    """The BPP refused a v2 request synchronously (NACK, a non-200 status, or a bad counter-signature)."""

    def __init__(self, action: str, reply: ReplyV2, why: str | None = None):
        err = reply.error or {}
        super().__init__(why or f"{action}: HTTP {reply.status} {reply.ack or 'no Ack'} "
                         f"{err.get('errorCode', '')} {err.get('errorMessage', '')}".rstrip())
        self.action, self.reply = action, reply
        self.code, self.error_message = err.get("errorCode"), err.get("errorMessage")


class BapV2CallbackError(BapError):
    """The callback arrived with `error {errorCode, errorMessage}`."""

    def __init__(self, action: str, error: Mapping[str, Any]):
        self.code, self.error_message = error.get("errorCode"), error.get("errorMessage")
        super().__init__(f"{action}: {self.code} {self.error_message}")


@dataclass(frozen=True, slots=True)
class ReplyV2:
    status: int
    ack: str | None
    error: dict[str, Any] | None
    body: dict[str, Any] | None
    context: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.ack == "ACK"


class BapV2Client:
    """Signs and POSTs v2.0.0 requests to one BPP (`bpp_uri` = its v2 base, e.g.
    `https://bpp.example/beckn/v2`); `bpp_key` (the BPP's public key, base64) verifies every Ack's
    counter-signature."""

    def __init__(self, identity: BapIdentity, bpp_id: str, bpp_uri: str, *, network_id: str | None = NETWORK_ID,
                 bpp_key: str | None = None, timeout: float = 10.0, ttl_s: int = 30, ssl_context: Any = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.identity, self.bpp_id, self.bpp_uri = identity, bpp_id, bpp_uri.rstrip("/")
        self.network_id, self.bpp_key, self.timeout, self.ttl_s, self.clock = network_id, bpp_key, timeout, ttl_s, clock
        handlers: list[Any] = [urllib.request.ProxyHandler({}), _NoRedirect()]
        if ssl_context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=ssl_context))
        self._opener = urllib.request.build_opener(*handlers)

    def context(self, action: str, *, transaction_id: str, message_id: str, now: datetime,
                preview: bool = False, page_cursor: str | None = None) -> dict[str, Any]:
        ctx: dict[str, Any] = {"version": VERSION, "action": action, "bapId": self.identity.subscriber_id,
                               "bapUri": self.identity.bap_uri, "bppId": self.bpp_id, "bppUri": self.bpp_uri,
                               "transactionId": transaction_id, "messageId": message_id,
                               "timestamp": render_timestamp(now), "ttl": f"PT{self.ttl_s}S"}
        if self.network_id:
            ctx["networkId"] = self.network_id
        if preview:
            ctx["try"] = True
        if page_cursor is not None:  # the devkit's pull pagination (BecknPageInfo)
            ctx["tags"] = [{"descriptor": {"code": "pagination"},
                            "list": [{"descriptor": {"code": "pageCursor"}, "value": page_cursor}]}]
        return ctx

    def send(self, action: str, message: Mapping[str, Any], *, transaction_id: str | None = None,
             message_id: str | None = None, preview: bool = False, page_cursor: str | None = None) -> ReplyV2:
        if action not in CALLBACK_ACTIONS:
            raise ValueError(f"{action!r} is not a v2 request action")
        now = self.clock()
        ctx = self.context(action, transaction_id=transaction_id or str(uuid.uuid4()),
                           message_id=message_id or str(uuid.uuid4()), now=now, preview=preview,
                           page_cursor=page_cursor)
        body = envelope.render({"context": ctx, "message": dict(message)})
        auth = signing.authorization_header(body, self.identity.signing_key, now=now, ttl_s=self.ttl_s)
        request = urllib.request.Request(f"{self.bpp_uri}/{action}", data=body, method="POST", headers={
            "Content-Type": "application/json", "Accept": "application/json", "Authorization": auth})
        try:
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    status, raw = response.status, response.read(MAX_ANSWER_BYTES)
            except urllib.error.HTTPError as exc:
                with exc:
                    status, raw = exc.code, exc.read(MAX_ANSWER_BYTES)
        except (OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc or type(exc).__name__
            raise BapNetworkError(f"{action} to {self.bpp_uri}/{action} failed: {reason}") from exc
        try:
            parsed: dict[str, Any] | None = codec.parse_json(raw)
        except codec.JsonError:
            parsed = None
        ack = parsed.get("status") if parsed else None
        error = parsed.get("error") if parsed and isinstance(parsed.get("error"), dict) else None
        reply = ReplyV2(status, ack if ack in ("ACK", "NACK") else None, error, parsed, ctx)
        if parsed is not None and self.bpp_key is not None and reply.ack is not None:
            try:
                envelope.verify_counter_signature(parsed, body, ctx["messageId"], self.bpp_key, now=self.clock(),
                                                  expected_signer=self.bpp_id)
            except envelope.CounterSignatureError as exc:
                raise BapV2Nack(action, reply, f"{action}: the Ack's counter-signature does not hold: {exc}") from None
        return reply


# ---------------------------------------------------------------------------------------- flows


class BapV2:
    """Requests through a BapV2Client, callbacks through a v2 CallbackReceiver."""

    def __init__(self, client: BapV2Client, receiver: CallbackReceiver, *, timeout: float = 30.0) -> None:
        self.client, self.receiver, self.timeout = client, receiver, timeout
        self._sent: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def call(self, action: str, message: Mapping[str, Any], *, transaction_id: str | None = None,
             preview: bool = False, timeout: float | None = None, page_cursor: str | None = None) -> dict[str, Any]:
        """Send `action` and wait for its callback: `{transaction_id, message_id, context, message}`."""
        transaction_id = transaction_id or str(uuid.uuid4())
        message_id = str(uuid.uuid4())
        with self._lock:
            if len(self._sent) >= 10_000 and transaction_id not in self._sent:
                self._sent.pop(next(iter(self._sent)))
            self._sent.setdefault(transaction_id, set()).add(message_id)
        reply = self.client.send(action, message, transaction_id=transaction_id, message_id=message_id,
                                 preview=preview, page_cursor=page_cursor)
        if not reply.ok:
            raise BapV2Nack(action, reply)
        try:
            cb = self.receiver.wait_for(message_id=message_id, action=CALLBACK_ACTIONS[action],
                                        timeout=self.timeout if timeout is None else timeout)
        except CallbackTimeout as exc:
            raise BapTimeout(f"{action} (transaction {transaction_id}) was ACKed but {exc}") from None
        if cb.error is not None:
            raise BapV2CallbackError(CALLBACK_ACTIONS[action], cb.error)
        return {"transaction_id": transaction_id, "message_id": message_id, "context": cb.context,
                "message": cb.message or {}, "seq": cb.seq}

    def wait_push(self, transaction_id: str, *, after_seq: int = 0, timeout: float | None = None,
                  until: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
        """The next unsolicited on_status in a transaction (after `after_seq`), or the first that
        satisfies `until(message)`."""
        seq = after_seq
        end = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            with self._lock:
                sent = set(self._sent.get(transaction_id, ()))
            try:
                cb = self.receiver.wait_unsolicited(transaction_id, sent_message_ids=sent, after_seq=seq,
                                                    timeout=max(0.0, end - time.monotonic()))
            except CallbackTimeout as exc:
                raise BapTimeout(str(exc)) from None
            seq = cb.seq
            if until is None or until(cb.message or {}):
                return {"context": cb.context, "message": cb.message or {}, "seq": cb.seq}

    # ------------------------------------------------------------------------------- the flows

    def discover(self, text: str | None = None, **kw: Any) -> list[dict[str, Any]]:
        """The catalogs the BPP answers a direct discover with."""
        intent = {"textSearch": text} if text else {}
        return self.call("discover", {"intent": intent}, **kw)["message"].get("catalogs") or []

    def enroll(self, program_id: int, meters: Sequence[str], *, seller: str, bid: Bid | None,
               period: tuple[str, str], currency: str, capacity_kw: float | None = None,
               timeout: float | None = None, resource_types: Mapping[str, str] | None = None) -> dict[str, Any]:
        """select → init → confirm (the bid at confirm, as uc2): `{transaction_id, contract,
        answers: {select, init, confirm}}`."""
        txn = str(uuid.uuid4())
        answers = {}
        for action in ("select", "init"):
            msg = contract_message(program_id, meters=meters, seller=seller, capacity_kw=capacity_kw, currency=currency,
                                   resource_types=resource_types)
            answers[action] = self.call(action, msg, transaction_id=txn, timeout=timeout)
        cid = answers["init"]["message"]["contract"]["id"]
        msg = contract_message(program_id, meters=meters, seller=seller, bid=bid, contract_id=cid, period=period,
                               currency=currency, capacity_kw=capacity_kw, resource_types=resource_types)
        answers["confirm"] = self.call("confirm", msg, transaction_id=txn, timeout=timeout)
        return {"transaction_id": txn, "contract": answers["confirm"]["message"]["contract"], "answers": answers}

    def update(self, program_id: int, contract_id: str, transaction_id: str, *, seller: str,
               meters: Sequence[str] | None = None, bid: Bid | None = None, period: tuple[str, str],
               currency: str, preview: bool = False, **kw: Any) -> dict[str, Any]:
        """Opt in (new meters) and/or place a new bid on an ACTIVE contract: its answered Contract."""
        msg = contract_message(program_id, meters=meters, seller=seller, bid=bid, contract_id=contract_id,
                               period=period, currency=currency)
        return self.call("update", msg, transaction_id=transaction_id, preview=preview, **kw)["message"]["contract"]

    def status(self, contract_id: str, transaction_id: str, *, page_cursor: str | None = None,
               **kw: Any) -> dict[str, Any]:
        """The contract; `page_cursor` pulls that page of its performance (pageInfo.nextCursor)."""
        return self.call("status", {"contract": {"id": contract_id, "commitments": [{"id": "status"}]}},
                         transaction_id=transaction_id, page_cursor=page_cursor, **kw)["message"]["contract"]

    def status_pages(self, contract_id: str, transaction_id: str, **kw: Any) -> list[dict[str, Any]]:
        """Every page of the contract's performance, pulled in turn until nextCursor is null."""
        pages, cursor = [], None
        while True:
            contract = self.status(contract_id, transaction_id, page_cursor=cursor, **kw)
            pages.append(contract)
            info = next((p.get("pageInfo") for p in performance(contract) if p.get("pageInfo")), None)
            cursor = info.get("nextCursor") if info else None
            if not cursor or len(pages) >= 10_000:
                return pages

    def cancel(self, contract_id: str, transaction_id: str, *, preview: bool = False, **kw: Any) -> dict[str, Any]:
        return self.call("cancel", {"contract": {"id": contract_id, "commitments": [{"id": "cancel"}]}},
                         transaction_id=transaction_id, preview=preview, **kw)["message"]["contract"]
