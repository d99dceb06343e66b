"""The 2030.5 blueprint: DeviceCapability, Time, EndDevice, Registration.

Routes are generated from server.sep2.uris; HEAD is answered wherever GET is (Flask does it);
a method the resource does not support gets 405 with an Allow header.
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, request

from server.api.client import client_identity, client_scope, now, runtime
from server.sep2 import codec, uris
from server.sep2.models import MEDIA_TYPE, EndDevice
from server.sep2.paging import parse_page
from server.services import dcap, edev, tm
from server.services.errors import UnsupportedMediaType

bp = Blueprint("sep2", __name__)

_ACCEPTED_CONTENT_TYPES = ("application/sep+xml", "application/xml", "text/xml")


def rule(template: str) -> str:
    # Ids are bounded like the database's INTEGER: a larger number is simply not found.
    return re.sub(r"\{(\w+)\}", r"<int(max=2147483647):\1>", template)


def xml(model: object, status: int = 200) -> Response:
    return Response(codec.render(model), status=status, content_type=MEDIA_TYPE)


def no_content(status: int, location: str | None = None) -> Response:
    resp = Response(status=status)
    del resp.headers["Content-Type"]  # no body, so no media type
    if location:
        resp.headers["Location"] = location
    return resp


def _body(model: type) -> object:
    ctype = (request.mimetype or "").lower()
    if ctype not in _ACCEPTED_CONTENT_TYPES:
        raise UnsupportedMediaType(f"Content-Type must be {MEDIA_TYPE}")
    max_bytes = runtime().settings.max_body_bytes
    return codec.parse(request.get_data(cache=False), model, max_bytes=max_bytes)


@bp.get(rule(uris.DCAP))
def get_dcap() -> Response:
    rt = runtime()
    with rt.db.transaction() as s:
        scope = client_scope(s)
        return xml(dcap.device_capability(s, scope, rt.poll_rate(s, "dcap")))


@bp.get(rule(uris.TM))
def get_tm() -> Response:
    rt = runtime()
    with rt.db.transaction() as s:
        client_scope(s)
        return xml(tm.time_resource(now(), rt.settings.zone, rt.poll_rate(s, "tm")))


@bp.get(rule(uris.EDEV_LIST))
def get_edev_list() -> Response:
    rt = runtime()
    page = parse_page(request.args)
    with rt.db.transaction() as s:
        scope = client_scope(s)
        return xml(edev.end_device_list(s, scope, page, rt.poll_rate(s, "edev")))


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
def get_edev(edev_id: int) -> Response:
    rt = runtime()
    with rt.db.transaction() as s:
        return xml(edev.end_device(s, client_scope(s), edev_id))


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


@bp.get(rule(uris.EDEV_RG))
def get_rg(edev_id: int) -> Response:
    rt = runtime()
    with rt.db.transaction() as s:
        return xml(edev.registration(s, client_scope(s), edev_id, rt.poll_rate(s, "rg")))
