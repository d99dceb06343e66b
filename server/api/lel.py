"""Log events: the 2030.5 `lel` resources devices post to and read, and the admin API operators
read them with.

    GET    /edev/{id}/lel                                LogEventList, newest first (not cached)
    POST   /edev/{id}/lel                                LogEvent → 201 + Location
    GET    /edev/{id}/lel/{l}                            LogEvent
    GET    /admin/api/v1/devices/{id}/log-events         ?start&limit

Rules (scope, the per-device bound) live in server.services.sep2.lel.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from server.api.admin import int_arg, require_token
from server.api.client import client_identity, client_scope, now, runtime
from server.api.sep2 import _body, no_content, resource, rule
from server.db.repo import Reader
from server.scope import Scope
from server.sep2 import uris
from server.sep2.log import LogEvent
from server.sep2.paging import parse_page
from server.services.sep2 import lel

bp = Blueprint("lel", __name__)
admin_bp = Blueprint("admin_log_events", __name__, url_prefix="/admin/api/v1")
admin_bp.before_request(require_token)


@bp.get(rule(uris.LEL_LIST))
@resource(cache=False)  # changes with every post; not polled
def get_lel_list(s: Reader, scope: Scope, edev_id: int) -> object:
    return lel.log_event_list(s, scope, edev_id, parse_page(request.args), runtime().poll_rate(s, "lel"))


@bp.post(rule(uris.LEL_LIST))
def post_log_event(edev_id: int) -> Response:
    rt = runtime()
    ident = client_identity()  # no certificate: 403 before the body is read
    posted = _body(LogEvent)
    with rt.db.transaction() as s:
        new_id = lel.post_log_event(s, client_scope(s, ident), edev_id, posted, now())
    return no_content(201, uris.href(uris.LEL, edev_id=edev_id, lel_id=new_id))


@bp.get(rule(uris.LEL))
@resource(cache=False)
def get_lel(s: Reader, scope: Scope, edev_id: int, lel_id: int) -> object:
    return lel.log_event(s, scope, edev_id, lel_id)


@admin_bp.get("/devices/<int(max=2147483647):device_id>/log-events")
def device_log_events(device_id: int) -> Response:
    start, limit = int_arg("start", 0, 2**31), int_arg("limit", 100, 1000)
    with runtime().db.transaction() as s:
        return jsonify(lel.device_log_events(s, device_id, start, limit))
