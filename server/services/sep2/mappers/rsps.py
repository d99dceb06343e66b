"""Responses function set (`rsps`): ResponseSet per DER program, Response from the stored rows
(server.db.rsps), and their lists. A DER program's ResponseSet has the program's id, mRID and
description: it is where the program's events ask to be answered (their replyTo)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from server.sep2 import uris
from server.sep2.rsps import Response, ResponseList, ResponseSet, ResponseSetList
from server.sep2.types import ListLinkValue


def response_set(der_program: Any) -> ResponseSet:
    """The ResponseSet of a DER program (row: id, mrid, description)."""
    return ResponseSet(
        href=uris.href(uris.RSPS, rsps_id=der_program.id),
        mrid=der_program.mrid,
        description=der_program.description,
        response_list_link=ListLinkValue(uris.href(uris.RSP_LIST, rsps_id=der_program.id)),
    )


def response_set_list(der_programs: Sequence[Any], all_: int, poll_rate: int) -> ResponseSetList:
    """A page of ResponseSets (one per DER program) out of `all_`."""
    return ResponseSetList(
        href=uris.RSPS_LIST,
        all=all_,
        results=len(der_programs),
        poll_rate=poll_rate,
        response_sets=[response_set(r) for r in der_programs],
    )


def response(rsps_id: int, row: Any) -> Response:
    """A stored Response (row: id, created_date_time, lfdi, status, subject) in ResponseSet `rsps_id`."""
    return Response(
        href=uris.href(uris.RSP, rsps_id=rsps_id, rsp_id=row.id),
        created_date_time=row.created_date_time,
        end_device_lfdi=row.lfdi,
        status=row.status,
        subject=row.subject,
    )


def response_list(rsps_id: int, rows: Sequence[Any], all_: int) -> ResponseList:
    """A page of ResponseSet `rsps_id`'s responses out of `all_`."""
    return ResponseList(
        href=uris.href(uris.RSP_LIST, rsps_id=rsps_id),
        all=all_,
        results=len(rows),
        responses=[response(rsps_id, r) for r in rows],
    )
