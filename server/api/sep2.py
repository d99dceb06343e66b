"""The 2030.5 blueprint: DeviceCapability, Time, EndDevice, Registration.

Routes are generated from server.sep2.uris; HEAD is answered wherever GET is (Flask does it);
a method the resource does not support gets 405 with an Allow header. GET views are functions of
(session, scope, url arguments) returning a model; `resource` does identity, caching, the
transaction and rendering for all of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Response, request
from server.db.changes import SEP2
from server.db.repo import Reader

from server.api.client import client_identity, client_scope, now, now_exact, runtime
from server.scope import Scope
from server.sep2 import codec, uris
from server.sep2.csipaus import ConnectionPoint
from server.sep2.models import MEDIA_TYPE, EndDevice
from server.sep2.rsps import DERControlResponse, Response as ResponseDoc
from server.sep2.paging import parse_page
from server.services.sep2 import connection_points, dcap, derp, edev, fsa, rsps, tm
from server.services.errors import UnsupportedMediaType

bp = Blueprint("sep2", __name__)

ACCEPTED_CONTENT_TYPES = ("application/sep+xml", "application/xml", "text/xml")


def rule(template: str) -> str:
    # Ids are bounded like the database's INTEGER: a larger number is simply not found.
    return re.sub(r"\{(\w+)\}", r"<int(max=2147483647):\1>", template)


def no_content(status: int, location: str | None = None) -> Response:
    resp = Response(status=status)
    del resp.headers["Content-Type"]  # no body, so no media type
    if location:
        resp.headers["Location"] = location
    return resp


def _body(model: type | tuple[type, ...]) -> Any:
    ctype = (request.mimetype or "").lower()
    if ctype not in ACCEPTED_CONTENT_TYPES:
        raise UnsupportedMediaType(f"Content-Type must be {MEDIA_TYPE}")
    max_bytes = runtime().settings.max_body_bytes
    return codec.parse(request.get_data(cache=False), model, max_bytes=max_bytes)


def resource(*, cache: bool = True, family: str = SEP2) -> Callable[[Callable[..., Any]], Callable[..., Response]]:
    """Wrap a GET view `(reader, scope, **url_args) -> model` (reader: a plain connection).

    With `cache`, the rendered body is reused per (certificate, URL) until something of its
    `family` changes (server.db.changes): these are the documents devices poll. Only successful
    answers are kept (errors are raised).
    """

    def decorate(view: Callable[..., Any]) -> Callable[..., Response]:
        @wraps(view)
        def wrapper(**kwargs: Any) -> Response:
            rt = runtime()
            ident = client_identity()

            def load() -> tuple[bytes, float | None]:
                with rt.db.read() as conn:
                    result = view(conn, client_scope(conn, ident), **kwargs)
                if isinstance(result, derp.Expiring):  # true only until its next transition
                    # from the exact clock: whole seconds would keep it up to a second too long
                    lifetime = None if result.until is None else result.until - now_exact()
                    return codec.render(result.model), lifetime
                return codec.render(result), None

            if cache and rt.settings.response_cache_seconds > 0:
                body = rt.responses(family).get_until((ident.lfdi, request.full_path), load)
            else:
                body = load()[0]
            return Response(body, content_type=MEDIA_TYPE)

        return wrapper

    return decorate




@bp.get(rule(uris.DCAP))
@resource()
def get_dcap(s: Reader, scope: Scope) -> object:
    return dcap.device_capability(s, scope, runtime().poll_rate(s, "dcap"))


@bp.get(rule(uris.TM))
@resource(cache=False)  # currentTime moves
def get_tm(s: Reader, scope: Scope) -> object:
    rt = runtime()
    return tm.time_resource(now(), rt.settings.zone, rt.poll_rate(s, "tm"))


@bp.get(rule(uris.EDEV_LIST))
@resource()
def get_edev_list(s: Reader, scope: Scope) -> object:
    page = parse_page(request.args)
    return edev.end_device_list(s, scope, page, runtime().poll_rate(s, "edev"))


@bp.post(rule(uris.EDEV_LIST))
def post_edev() -> Response:
    rt = runtime()
    ident = client_identity()
    posted = _body(EndDevice)
    with rt.db.transaction() as s:
        scope = client_scope(s, ident)
        new_id = edev.register(
            s, scope, posted, now(), allow_inband=rt.settings.allow_inband_registration
        )
    return no_content(201, uris.edev(new_id))


@bp.get(rule(uris.EDEV))
@resource()
def get_edev(s: Reader, scope: Scope, edev_id: int) -> object:
    return edev.end_device(s, scope, edev_id)


@bp.put(rule(uris.EDEV))
def put_edev(edev_id: int) -> Response:
    rt = runtime()
    ident = client_identity()
    posted = _body(EndDevice)
    with rt.db.transaction() as s:
        edev.update(s, client_scope(s, ident), edev_id, posted, now())
    return no_content(204)


@bp.delete(rule(uris.EDEV))
def delete_edev(edev_id: int) -> Response:
    rt = runtime()
    with rt.db.transaction() as s:
        edev.delete(s, client_scope(s), edev_id)
    return no_content(204)


@bp.get(rule(uris.CP))
@resource()
def get_cp(s: Reader, scope: Scope, edev_id: int) -> object:
    return connection_points.connection_point(s, scope, edev_id)


@bp.route(rule(uris.CP), methods=["PUT", "POST"])
def put_cp(edev_id: int) -> Response:
    """CSIP-AUS: the device (or its aggregator) sets its ConnectionPoint by PUT or POST; the
    answer carries the Location the client reads it back from."""
    rt = runtime()
    ident = client_identity()
    posted = _body(ConnectionPoint)
    with rt.db.transaction() as s:
        created = connection_points.put(s, client_scope(s, ident), edev_id, posted)
    return no_content(201 if created else 204, uris.href(uris.CP, edev_id=edev_id))


@bp.get(rule(uris.EDEV_RG))
@resource()
def get_rg(s: Reader, scope: Scope, edev_id: int) -> object:
    return edev.registration(s, scope, edev_id, runtime().poll_rate(s, "rg"))


@bp.get(rule(uris.FSA_LIST))
@resource()
def get_fsa_list(s: Reader, scope: Scope, edev_id: int) -> object:
    return fsa.fsa_list(s, scope, edev_id, parse_page(request.args), runtime().poll_rate(s, "fsa"))


@bp.get(rule(uris.FSA))
@resource()
def get_fsa(s: Reader, scope: Scope, edev_id: int, fsa_id: int) -> object:
    return fsa.fsa(s, scope, edev_id, fsa_id)


@bp.get(rule(uris.DERP_LIST))
@resource()
def get_derp_list(s: Reader, scope: Scope, edev_id: int, fsa_id: int) -> object:
    page = parse_page(request.args)
    return derp.der_program_list(s, scope, edev_id, fsa_id, page, runtime().poll_rate(s, "derp"))


@bp.get(rule(uris.DERP))
@resource()
def get_derp(s: Reader, scope: Scope, edev_id: int, derp_id: int) -> object:
    return derp.der_program(s, scope, edev_id, derp_id)


@bp.get(rule(uris.DERC_LIST))
@resource()
def get_derc_list(s: Reader, scope: Scope, edev_id: int, derp_id: int) -> object:
    return derp.control_list(s, scope, edev_id, derp_id, parse_page(request.args), now())


@bp.get(rule(uris.ACTDERC))
@resource()
def get_actderc(s: Reader, scope: Scope, edev_id: int, derp_id: int) -> object:
    page = parse_page(request.args)
    return derp.control_list(s, scope, edev_id, derp_id, page, now(), active_only=True)


@bp.get(rule(uris.DERC))
@resource()
def get_derc(s: Reader, scope: Scope, edev_id: int, derp_id: int, derc_id: int) -> object:
    return derp.control(s, scope, edev_id, derp_id, derc_id, now())


@bp.get(rule(uris.DDERC))
@resource()
def get_dderc(s: Reader, scope: Scope, edev_id: int, derp_id: int) -> object:
    return derp.default_control(s, scope, edev_id, derp_id)


@bp.get(rule(uris.RSPS_LIST))
@resource(cache=False)  # responses change with every post; they are not polled
def get_rsps_list(s: Reader, scope: Scope) -> object:
    return rsps.response_set_list(s, scope, parse_page(request.args), runtime().poll_rate(s, "rsps"))


@bp.get(rule(uris.RSPS))
@resource(cache=False)
def get_rsps(s: Reader, scope: Scope, rsps_id: int) -> object:
    return rsps.response_set(s, scope, rsps_id)


@bp.get(rule(uris.RSP_LIST))
@resource(cache=False)
def get_rsp_list(s: Reader, scope: Scope, rsps_id: int) -> object:
    return rsps.response_list(s, scope, rsps_id, parse_page(request.args))


@bp.post(rule(uris.RSP_LIST))
def post_rsp(rsps_id: int) -> Response:
    rt = runtime()
    ident = client_identity()
    posted = _body((ResponseDoc, DERControlResponse))
    with rt.db.transaction() as s:
        new_id = rsps.post_response(s, client_scope(s, ident), rsps_id, posted, now())
    return no_content(201, uris.href(uris.RSP, rsps_id=rsps_id, rsp_id=new_id))


@bp.get(rule(uris.RSP))
@resource(cache=False)
def get_rsp(s: Reader, scope: Scope, rsps_id: int, rsp_id: int) -> object:
    return rsps.response(s, scope, rsps_id, rsp_id)
