"""The admin API for flexibility programs (JSON, under /admin/api/v1/flex).

Utilities author programs and grid nodes, enroll devices, follow each window's clearing, cancel
windows, and dry-run a clearing before the scheduler does it for real. Same bearer token and
problem+json errors as the rest of the admin API; every request is one transaction, so a refused
request stores nothing. The rules live in server.services.flex.programs and server.services.flex.publishing.
A write is a command (server.services.flex.commands) parsed from the request, then executed; a refused
command's problem JSON names the field at fault (`"field": "offer.power[2]"`).

    POST   /flex/programs                          program JSON (programs.model) → 201
    GET    /flex/programs                          every program, brief
    GET    /flex/programs/{id}                     one, with its definition and next windows
    PATCH  /flex/programs/{id}                     {fields to change} → the program
    POST   /flex/programs/{id}/cancel              cancels its windows that have not ended
    GET    /flex/programs/{id}/windows             ?include_past=false&limit — with clearing results
    GET    /flex/programs/{id}/windows/{key}       one window: intervals, price, top setpoints
    POST   /flex/programs/{id}/windows/{key}/cancel
    GET    /flex/programs/{id}/dry-run             ?window=KEY&format=json|png — clear, write nothing
    POST   /flex/programs/{id}/enrollments         {device_id|lfdi, customer, kind?, grid_node?, offer?, state?}
    GET    /flex/programs/{id}/enrollments         ?start&limit
    POST   /flex/programs/{id}/enrollments/{e}/{confirm|pause|resume|cancel|end}
    PUT    /flex/programs/{id}/enrollments/{e}/offer   {"offer": … | null}
    PUT    /flex/grid-nodes                        {name, parent?, load_percent?, …} create or change
    GET    /flex/grid-nodes
    DELETE /flex/grid-nodes/{name}

Settlement (server.services.flex.settlement runs it; server.services.flex.reports reads it back):

    POST   /flex/programs/{id}/windows/{key}/settle                 measure and settle now (409 before
                                                                    the end or unpublished; {"unchanged": true}
                                                                    when the inputs did not change)
    GET    /flex/programs/{id}/windows/{key}/settlement             ?version&start&limit — summary, devices, versions
    GET    /flex/programs/{id}/windows/{key}/settlement.csv         ?version — device × interval rows
    GET    /flex/programs/{id}/windows/{key}/settlement.png         ?version — requested vs cleared vs delivered
    GET    /flex/programs/{id}/windows/{key}/settlement/devices/{d} ?version — one device down to its readings
    GET    /flex/programs/{id}/enrollments/{e}/settlement[.csv]     every current settlement of its device
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, jsonify, request

from server.api.admin import int_arg, json_object, require_token
from server.api.client import now, runtime
from server.api.errors import admin_error
from server.services.flex import plots, settlement, reports as settlement_reports, dry_run as dry_runs, enrollments, grid_nodes, programs as flex, windows
from server.services.errors import Invalid, check_text
from server.services.flex import commands, handlers
from server.services.flex.command_errors import CommandError

bp = Blueprint("admin_flex", __name__, url_prefix="/admin/api/v1/flex")
bp.before_request(require_token)
_TITLES = {"invalid": "Invalid", "not_found": "NotFound", "conflict": "Conflict"}

_PROGRAM = "/programs/<int(max=2147483647):program_id>"
_WINDOW = _PROGRAM + "/windows/<string(maxlength=32):key>"
_ENROLLMENT = _PROGRAM + "/enrollments/<int(max=2147483647):enrollment_id>"


@bp.errorhandler(CommandError)
def _refused(exc: CommandError) -> Response:
    """A refused command: the admin problem JSON, plus the field at fault (RFC 9457 extension member)."""
    resp = admin_error(exc.status, _TITLES[exc.kind], exc.message)
    if exc.field is not None:
        resp.set_data(json.dumps({**resp.get_json(), "field": exc.field}))
    return resp


def _window_key(key: str | None) -> str | None:
    """A window key as the database can compare it (no control characters: PostgreSQL takes no NUL)."""
    return check_text(key, "window", 32)


@bp.post("/programs")
def create_program() -> tuple[Response, int, dict[str, str]]:
    command = commands.parse_author_program(json_object())
    with runtime().db.transaction() as s:
        view = handlers.execute(s, command, now()).view()
    return jsonify(view), 201, {"Location": f"{bp.url_prefix}/programs/{view['id']}"}


@bp.get("/programs")
def list_programs() -> Response:
    with runtime().db.transaction() as s:
        return jsonify({"programs": flex.list_programs(s, now())})


@bp.get(_PROGRAM)
def get_program(program_id: int) -> Response:
    with runtime().db.transaction() as s:
        return jsonify(flex.get_program(s, program_id, now()))


@bp.patch(_PROGRAM)
def update_program(program_id: int) -> Response:
    command = commands.parse_update_program(program_id, json_object())
    with runtime().db.transaction() as s:
        return jsonify(handlers.execute(s, command, now()).view())


@bp.post(f"{_PROGRAM}/cancel")
def cancel_program(program_id: int) -> Response:
    with runtime().db.transaction() as s:
        return jsonify(handlers.execute(s, commands.CancelProgram(program_id), now()).view())


@bp.get(f"{_PROGRAM}/windows")
def list_windows(program_id: int) -> Response:
    raw = request.args.get("include_past", "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise Invalid("'include_past' must be true or false")
    with runtime().db.transaction() as s:
        return jsonify({"windows": windows.list_windows(s, program_id, now(), include_past=raw in ("true", "1"),
                                                         limit=int_arg("limit", 50, 1000))})


@bp.get(_WINDOW)
def get_window(program_id: int, key: str) -> Response:
    with runtime().db.transaction() as s:
        return jsonify(windows.window_view(s, program_id, _window_key(key) or "", top=int_arg("top", 10, 1000)))


@bp.post(f"{_WINDOW}/cancel")
def cancel_window(program_id: int, key: str) -> Response:
    command = commands.parse_cancel_window(program_id, key)
    with runtime().db.transaction() as s:
        return jsonify(handlers.execute(s, command, now()).view())


@bp.get(f"{_PROGRAM}/dry-run")
def dry_run(program_id: int) -> Response:
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "png"):
        raise Invalid("'format' must be json or png")
    with runtime().db.transaction() as s:
        result = dry_runs.dry_run(s, program_id, _window_key(request.args.get("window")), now())
        if fmt == "json":
            return jsonify(result.view(top=int_arg("top", 10, 1000)))
        return Response(plots.supply_curve_png(**result.plot_args()), mimetype="image/png")


@bp.post(f"{_PROGRAM}/enrollments")
def enroll(program_id: int) -> tuple[Response, int]:
    command = commands.parse_enroll(program_id, json_object())
    with runtime().db.transaction() as s:
        return jsonify(handlers.execute(s, command, now()).view()), 201


@bp.get(f"{_PROGRAM}/enrollments")
def list_enrollments(program_id: int) -> Response:
    with runtime().db.transaction() as s:
        return jsonify(enrollments.list_enrollments(s, program_id, int_arg("start", 0, 2**31), int_arg("limit", 100, 1000)))


@bp.post(f"{_ENROLLMENT}/<string(maxlength=16):event>")
def enrollment_event(program_id: int, enrollment_id: int, event: str) -> Response:
    command = commands.parse_enrollment_event(program_id, enrollment_id, event)
    with runtime().db.transaction() as s:
        return jsonify(handlers.execute(s, command, now()).view())


@bp.put(f"{_ENROLLMENT}/offer")
def update_offer(program_id: int, enrollment_id: int) -> Response:
    command = commands.parse_change_offer(program_id, enrollment_id, json_object())
    with runtime().db.transaction() as s:
        return jsonify(handlers.execute(s, command, now()).view())


@bp.put("/grid-nodes")
def put_grid_node() -> Response:
    command = commands.parse_put_grid_node(json_object())
    with runtime().db.transaction() as s:
        return jsonify(handlers.execute(s, command, now()).view())


@bp.get("/grid-nodes")
def list_grid_nodes() -> Response:
    with runtime().db.transaction() as s:
        return jsonify({"grid_nodes": grid_nodes.list_grid_nodes(s)})


@bp.delete("/grid-nodes/<string(maxlength=64):name>")
def delete_grid_node(name: str) -> tuple[str, int]:
    command = commands.parse_delete_grid_node(name)
    with runtime().db.transaction() as s:
        handlers.execute(s, command, now())
    return "", 204


# ---------------------------------------------------------------------------------- settlement

MAX_VERSION = 2**31 - 1


def _version() -> int | None:
    """?version=N (a stored settlement version), or None for the current one."""
    raw = request.args.get("version")
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10 or not 1 <= int(raw) <= MAX_VERSION:
        raise Invalid(f"'version' must be a whole number from 1 to {MAX_VERSION}, got {raw[:20]!r}")
    return int(raw)


def _csv(text: str, filename: str) -> Response:
    return Response(text, mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@bp.post(f"{_WINDOW}/settle")
def settle_window(program_id: int, key: str) -> Response:
    key = _window_key(key) or ""
    db = runtime().db
    outcome = settlement.settle_window(db, program_id, key, now(), reason="operator")
    if outcome is not None:  # its fact reaches the orders' BAPs through the outbox
        return jsonify({"unchanged": False, **outcome})
    with db.transaction() as s:  # the inputs did not change: the current version stands
        report = settlement_reports.window_report(s, program_id, key, limit=0)
    return jsonify({"unchanged": True, "program_id": program_id, "window": key, "action": "unchanged",
                    "version": report["version"], "reason": report["reason"],
                    "summary": f"program {report['program']!r} window {key}: the inputs did not change, "
                               f"version {report['version']} stands",
                    "settlement": report["summary"]})


@bp.get(f"{_WINDOW}/settlement")
def window_settlement(program_id: int, key: str) -> Response:
    version, start, limit = _version(), int_arg("start", 0, 2**31), int_arg("limit", 100, 1000)
    with runtime().db.transaction() as s:
        return jsonify(settlement_reports.window_report(s, program_id, _window_key(key) or "", version=version,
                                                        start=start, limit=limit))


@bp.get(f"{_WINDOW}/settlement.csv")
def window_settlement_csv(program_id: int, key: str) -> Response:
    version, key = _version(), _window_key(key) or ""
    with runtime().db.transaction() as s:
        text = settlement_reports.window_csv(s, program_id, key, version=version)
    return _csv(text, f"settlement-{program_id}-{key}.csv")


@bp.get(f"{_WINDOW}/settlement.png")
def window_settlement_png(program_id: int, key: str) -> Response:
    version = _version()
    with runtime().db.transaction() as s:
        args = settlement_reports.window_plot_args(s, program_id, _window_key(key) or "", version)
    return Response(plots.delivery_png(**args), mimetype="image/png")  # drawn with no transaction open


@bp.get(f"{_WINDOW}/settlement/devices/<int(max=2147483647):device_id>")
def device_settlement(program_id: int, key: str, device_id: int) -> Response:
    version = _version()
    with runtime().db.transaction() as s:
        return jsonify(settlement_reports.device_trace(s, program_id, _window_key(key) or "", device_id,
                                                       version=version))


@bp.get(f"{_ENROLLMENT}/settlement")
def enrollment_settlement(program_id: int, enrollment_id: int) -> Response:
    with runtime().db.transaction() as s:
        return jsonify(settlement_reports.enrollment_report(s, program_id, enrollment_id))


@bp.get(f"{_ENROLLMENT}/settlement.csv")
def enrollment_settlement_csv(program_id: int, enrollment_id: int) -> Response:
    with runtime().db.transaction() as s:
        text = settlement_reports.enrollment_csv(s, program_id, enrollment_id)
    return _csv(text, f"settlement-{program_id}-enrollment-{enrollment_id}.csv")
