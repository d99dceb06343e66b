"""The admin API for DER programs and their events (JSON, under /admin/api/v1).

Operators create DER programs, choose their members and DefaultDERControl, publish events to every
member or to some devices, cancel events, and follow the devices' responses. Same bearer-token
authentication and problem+json errors as the rest of the admin API (server/api/admin.py); the
rules live in server.services.sep2.der_programs and server.services.sep2.derp. Every request is one
transaction: a refused request stores nothing.

    POST   /der-programs                     {description?, primacy, default_control?} → 201
    GET    /der-programs                     every DER program with its member count
    GET    /der-programs/{id}                one, with its members and default control
    PUT    /der-programs/{id}/default-control   {control…} → 204
    GET    /der-programs/{id}/members        ?start&limit
    POST   /der-programs/{id}/members        {device_ids: […]} or {connection_point_id} → {added: n}
    DELETE /der-programs/{id}/members        {device_ids: […]} or {connection_point_id} → {removed: n}
    POST   /der-programs/{id}/events         {start, duration, control, device_ids? | connection_point_id?, …} → 201

A control (events, default control) takes every DERControlBase field by its 2030.5 name, the
CSIP-AUS dynamic operating envelope limits included: {"opModExpLimW": {"value": 15, "multiplier": 2}}
(1.5 kW export limit), opModImpLimW, opModGenLimW, opModLoadLimW. A site is its connection point
(NMI): its devices become members, or get the event, by `connection_point_id`.
    GET    /der-programs/{id}/events         ?include_ended=false&start&limit, with response summaries
    GET    /events/{mrid}                    one event with its response summary
    POST   /events/{mrid}/cancel             {randomized?: bool}

FunctionSetAssignments (server.services.sep2.fsa): an FSA for one device or a group, with the DER
programs it assigns; each device lists it under a number of its own (its FSA 1 is its memberships).

    POST   /fsas                             {description?, device_ids, der_program_ids?} → 201
    GET    /fsas                             ?device_id: every FSA (or those of one device)
    GET    /fsas/{id}                        one, with its DER programs and devices (and their numbers)
    PUT    /fsas/{id}                        {description}
    DELETE /fsas/{id}                        → 204
    POST   /fsas/{id}/der-programs           {der_program_ids: […]} → {added: n}
    DELETE /fsas/{id}/der-programs           {der_program_ids: […]} → {removed: n}
    POST   /fsas/{id}/devices                {device_ids: […]} → {added: n}
    DELETE /fsas/{id}/devices                {device_ids: […]} → {removed: n}
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from server.api.admin import int_arg, json_object, require_token
from server.api.client import now, runtime
from server.services.errors import Invalid
from server.services.sep2 import der_programs, fsa

bp = Blueprint("admin_der_programs", __name__, url_prefix="/admin/api/v1")
bp.before_request(require_token)

_DER_PROGRAM = "/der-programs/<int(max=2147483647):program_id>"
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _bool_arg(name: str, default: bool) -> bool:
    raw = request.args.get(name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise Invalid(f"{name!r} must be true or false")


def _optional_object() -> dict[str, Any]:
    """The JSON object body, or {} when there is no body at all."""
    if not request.content_length and not request.get_data(cache=True):
        return {}
    return json_object()


@bp.post("/der-programs")
def create_der_program() -> tuple[Response, int, dict[str, str]]:
    body = json_object()
    with runtime().db.transaction() as s:
        view = der_programs.create_der_program(s, body, now())
    return jsonify(view), 201, {"Location": f"{bp.url_prefix}/der-programs/{view['id']}"}


@bp.get("/der-programs")
def list_der_programs() -> Response:
    with runtime().db.transaction() as s:
        return jsonify({"programs": der_programs.list_der_programs(s)})


@bp.get(_DER_PROGRAM)
def get_der_program(program_id: int) -> Response:
    with runtime().db.transaction() as s:
        return jsonify(der_programs.get_der_program(s, program_id))


@bp.put(f"{_DER_PROGRAM}/default-control")
def set_default_control(program_id: int) -> tuple[str, int]:
    body = json_object()
    with runtime().db.transaction() as s:
        der_programs.set_default_control(s, program_id, body)
    return "", 204


@bp.get(f"{_DER_PROGRAM}/members")
def list_members(program_id: int) -> Response:
    start, limit = int_arg("start", 0, 2**31), int_arg("limit", 100, 1000)
    with runtime().db.transaction() as s:
        return jsonify(der_programs.list_members(s, program_id, start, limit))


@bp.post(f"{_DER_PROGRAM}/members")
def add_members(program_id: int) -> Response:
    body = json_object()
    with runtime().db.transaction() as s:
        return jsonify({"added": der_programs.add_members(s, program_id, der_programs.targets(s, body))})


@bp.delete(f"{_DER_PROGRAM}/members")
def remove_members(program_id: int) -> Response:
    body = json_object()
    with runtime().db.transaction() as s:
        return jsonify({"removed": der_programs.remove_members(s, program_id, der_programs.targets(s, body))})


@bp.post(f"{_DER_PROGRAM}/events")
def create_events(program_id: int) -> tuple[Response, int, dict[str, str]]:
    body = json_object()
    with runtime().db.transaction() as s:
        views = der_programs.create_events(s, program_id, body, now())
    headers = {"Location": f"{bp.url_prefix}/events/{views[0]['mrid']}"} if len(views) == 1 else {}
    return jsonify({"events": views}), 201, headers


@bp.get(f"{_DER_PROGRAM}/events")
def list_events(program_id: int) -> Response:
    include_ended = _bool_arg("include_ended", False)
    start, limit = int_arg("start", 0, 2**31), int_arg("limit", 100, 1000)
    with runtime().db.transaction() as s:
        return jsonify(
            der_programs.list_events(s, program_id, now(), include_ended=include_ended, start=start, limit=limit)
        )


@bp.get("/events/<mrid>")
def get_event(mrid: str) -> Response:
    with runtime().db.transaction() as s:
        return jsonify(der_programs.get_event(s, mrid, now()))


@bp.post("/events/<mrid>/cancel")
def cancel_event(mrid: str) -> Response:
    body = _optional_object()
    with runtime().db.transaction() as s:
        return jsonify(der_programs.cancel_event(s, mrid, now(), body))


# ----------------------------------------------------------------------- FunctionSetAssignments

_FSA = "/fsas/<int(max=2147483647):fsa_id>"


@bp.post("/fsas")
def create_fsa() -> tuple[Response, int, dict[str, str]]:
    body = json_object()
    with runtime().db.transaction() as s:
        view = fsa.create_fsa(s, body, now())
    return jsonify(view), 201, {"Location": f"{bp.url_prefix}/fsas/{view['id']}"}


@bp.get("/fsas")
def list_fsas() -> Response:
    device_id = int_arg("device_id", 0, 2**31 - 1) or None
    with runtime().db.transaction() as s:
        return jsonify({"fsas": fsa.list_fsas(s, device_id)})


@bp.get(_FSA)
def get_fsa(fsa_id: int) -> Response:
    with runtime().db.transaction() as s:
        return jsonify(fsa.get_fsa(s, fsa_id))


@bp.put(_FSA)
def update_fsa(fsa_id: int) -> Response:
    body = json_object()
    with runtime().db.transaction() as s:
        return jsonify(fsa.update_fsa(s, fsa_id, body))


@bp.delete(_FSA)
def delete_fsa(fsa_id: int) -> tuple[str, int]:
    with runtime().db.transaction() as s:
        fsa.delete_fsa(s, fsa_id)
    return "", 204


@bp.post(f"{_FSA}/der-programs")
def assign_der_programs(fsa_id: int) -> Response:
    body = json_object()
    with runtime().db.transaction() as s:
        return jsonify({"added": fsa.assign_der_programs(s, fsa_id, body.get("der_program_ids"))})


@bp.delete(f"{_FSA}/der-programs")
def unassign_der_programs(fsa_id: int) -> Response:
    body = json_object()
    with runtime().db.transaction() as s:
        return jsonify({"removed": fsa.unassign_der_programs(s, fsa_id, body.get("der_program_ids"))})


@bp.post(f"{_FSA}/devices")
def assign_devices(fsa_id: int) -> Response:
    body = json_object()
    with runtime().db.transaction() as s:
        return jsonify({"added": fsa.assign_devices(s, fsa_id, body.get("device_ids"))})


@bp.delete(f"{_FSA}/devices")
def unassign_devices(fsa_id: int) -> Response:
    body = json_object()
    with runtime().db.transaction() as s:
        return jsonify({"removed": fsa.unassign_devices(s, fsa_id, body.get("device_ids"))})
