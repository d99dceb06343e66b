"""The admin API (JSON, under /admin/api/v1): operators register devices out of band, list and
remove them, set their CSIP-AUS connection points (NMI), name aggregators, revoke and restore
client certificates, and change poll and post rates at run time.

    GET    /devices  POST /devices  GET /devices/{id}  DELETE /devices/{id}
    PUT    /devices/{id}/connection-point   {connection_point_id | null}
    GET    /connection-points               every site with its device ids
    GET    /revoked-clients  POST /revoked-clients {lfdi, reason?}  DELETE /revoked-clients/{lfdi}
    PUT    /devices/{id}/post-rate  GET /poll-rates  PUT /poll-rates/{resource}  POST /aggregators

Authentication: `Authorization: Bearer <token>`, tokens made by `derflex admin token` (the first
start writes one to <home>/var/admin-token, mode 0600). No token, no access: there is no
anonymous or default-password mode. Behind TLS the connection also needs a client certificate
from this server's CA, like every other.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, jsonify, request

from server.api.client import now, runtime
from server.api.errors import admin_error
from server.services.sep2 import connection_points, devices
from server.services import tokens
from server.services.errors import Invalid, check_text, no_unknown_keys

bp = Blueprint("admin", __name__, url_prefix="/admin/api/v1")
_DIGITS = re.compile(r"[0-9]{1,9}")
MAX_JSON_BYTES = 64 * 1024


def require_token() -> Response | None:
    """before_request hook of every admin blueprint: a valid bearer token or 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="derflex-admin"'}
    if scheme.lower() != "bearer" or not token.strip():
        return admin_error(401, "Unauthorized", "an admin bearer token is required", **challenge)
    with runtime().db.transaction() as s:
        if not tokens.check_token(s, token.strip()):
            return admin_error(401, "Unauthorized", "unknown or revoked token", **challenge)
    return None



bp.before_request(require_token)


def json_object() -> dict[str, Any]:
    if (request.content_length or 0) > MAX_JSON_BYTES:
        raise Invalid(f"the body is larger than {MAX_JSON_BYTES} bytes")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # deeply nested arrays: refuse, do not crash
        body = None
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object (Content-Type: application/json)")
    return body


def int_arg(name: str, default: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw):
        raise Invalid(f"{name!r} must be a non-negative integer")
    return min(int(raw), hi)


@bp.get("/devices")
def list_devices() -> Response:
    start, limit = int_arg("start", 0, 2**31), int_arg("limit", 100, 1000)
    with runtime().db.transaction() as s:
        return jsonify(devices.list_devices(s, start, limit))


@bp.post("/devices")
def register_device() -> tuple[Response, int, dict[str, str]]:
    body = json_object()
    with runtime().db.transaction() as s:
        view = devices.register_device(s, body, now())
    return jsonify(view), 201, {"Location": f"{bp.url_prefix}/devices/{view['id']}"}


@bp.get("/devices/<int(max=2147483647):device_id>")
def get_device(device_id: int) -> Response:
    with runtime().db.transaction() as s:
        return jsonify(devices.get_device(s, device_id))


@bp.delete("/devices/<int(max=2147483647):device_id>")
def remove_device(device_id: int) -> tuple[str, int]:
    """Remove a device and its 2030.5 data (409 while flexibility records of it exist)."""
    with runtime().db.transaction() as s:
        devices.remove_device(s, device_id, now())
    return "", 204


@bp.put("/devices/<int(max=2147483647):device_id>/connection-point")
def set_connection_point(device_id: int) -> Response:
    """{"connection_point_id": "4102000000" | null}: set or clear the device's CSIP-AUS site (NMI)."""
    body = json_object()
    no_unknown_keys(body, {"connection_point_id"}, "a connection point")
    if "connection_point_id" not in body:
        raise Invalid("'connection_point_id' is required (null clears it)")
    with runtime().db.transaction() as s:
        return jsonify(connection_points.set_for_device(s, device_id, body["connection_point_id"]))


@bp.get("/connection-points")
def list_connection_points() -> Response:
    start, limit = int_arg("start", 0, 2**31), int_arg("limit", 100, 1000)
    with runtime().db.transaction() as s:
        return jsonify(connection_points.list_connection_points(s, start, limit))


@bp.get("/revoked-clients")
def list_revoked_clients() -> Response:
    with runtime().db.transaction() as s:
        return jsonify({"revoked_clients": devices.revoked_clients(s)})


@bp.post("/revoked-clients")
def revoke_client() -> tuple[Response, int, dict[str, str]]:
    """{"lfdi", "reason"?}: every 2030.5 request of that certificate is refused (403) from now on,
    in every server process, until DELETE restores it."""
    body = json_object()
    no_unknown_keys(body, {"lfdi", "reason"}, "a revocation")
    with runtime().db.transaction() as s:
        view = devices.revoke_client(s, body.get("lfdi"), body.get("reason"), now())
    return jsonify(view), 201, {"Location": f"{bp.url_prefix}/revoked-clients/{view['lfdi']}"}


@bp.delete("/revoked-clients/<lfdi>")
def restore_client(lfdi: str) -> tuple[str, int]:
    with runtime().db.transaction() as s:
        devices.restore_client(s, lfdi)
    return "", 204


@bp.put("/devices/<int(max=2147483647):device_id>/post-rate")
def set_post_rate(device_id: int) -> tuple[str, int]:
    body = json_object()
    with runtime().db.transaction() as s:
        devices.set_post_rate(s, device_id, body.get("seconds"), now())
    return "", 204


@bp.get("/poll-rates")
def get_poll_rates() -> Response:
    rt = runtime()
    with rt.db.transaction() as s:
        return jsonify(devices.poll_rates(s, rt.settings.poll_rate))


@bp.put("/poll-rates/<resource>")
def set_poll_rate(resource: str) -> tuple[str, int]:
    body = json_object()
    rt = runtime()
    with rt.db.transaction() as s:
        devices.set_poll_rate(s, resource, body.get("seconds"))
    return "", 204


@bp.post("/aggregators")
def add_aggregator() -> tuple[Response, int]:
    body = json_object()
    lfdi, name = body.get("lfdi"), body.get("name")
    if not isinstance(lfdi, str) or not isinstance(name, str) or not name.strip():
        raise Invalid("'lfdi' and 'name' are required strings")
    checked = check_text(name.strip(), "'name'", 100) or ""  # no control characters, no lone surrogates
    rt = runtime()
    with rt.db.transaction() as s:
        view = devices.add_aggregator(s, lfdi, checked, now())
    return jsonify(view), 201
