"""The 2030.5 Metering Mirror (`/mup`) and Metering (`/upt`) function sets.

POST /mup (MirrorUsagePoint: 201 or 204, with Location), POST /mup/{id} (MirrorMeterReading or
MirrorMeterReadingList: 201 with Location); GET (and HEAD) everywhere, through `resource`. Any
other method gets 405 with Allow. Rules live in server.services.sep2.mup.

GETs are not cached: what they show depends on two change families at once — who may see a
usage point follows its device ("sep2": devices, aggregators, the operator's postRate) and the
data is "metering" — while a cached body is dropped by one family only. These are not the
documents devices poll (devices POST here; the read side is for aggregators, operators and
M&V), so every GET reads the database: a few primary-key and range lookups.
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, request

from server.api.client import client_identity, client_scope, now, runtime
from server.api.sep2 import ACCEPTED_CONTENT_TYPES, _body, no_content, resource, rule
from server.db.repo import Reader
from server.scope import Scope
from server.sep2 import codec, uris
from server.sep2.models import MEDIA_TYPE
from server.sep2.mup import MirrorMeterReading, MirrorMeterReadingList, MirrorUsagePoint
from server.sep2.paging import parse_page
from server.services.sep2 import mup
from server.services.errors import UnsupportedMediaType

bp = Blueprint("mup", __name__)
_uncached = resource(cache=False)

# The root element's name, after an optional XML declaration and comments. It only chooses which
# model the codec parses with; the codec itself checks the root.
_ROOT = re.compile(rb"\s*(?:<\?.*?\?>\s*)?(?:<!--.*?-->\s*)*<(?:[A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)", re.S)


def _readings_body() -> MirrorMeterReading | MirrorMeterReadingList:
    ctype = (request.mimetype or "").lower()
    if ctype not in ACCEPTED_CONTENT_TYPES:
        raise UnsupportedMediaType(f"Content-Type must be {MEDIA_TYPE}")
    data = request.get_data(cache=False)
    root = _ROOT.match(data[:4096])
    model = MirrorMeterReadingList if root and root.group(1) == b"MirrorMeterReadingList" else MirrorMeterReading
    return codec.parse(data, model, max_bytes=runtime().settings.max_body_bytes)


# ----------------------------------------------------------------------------- mirror side


@bp.get(rule(uris.MUP_LIST))
@_uncached
def get_mup_list(s: Reader, scope: Scope) -> object:
    return mup.mirror_usage_point_list(s, scope, parse_page(request.args), runtime().poll_rate(s, "mup"))


@bp.post(rule(uris.MUP_LIST))
def post_mup() -> Response:
    rt = runtime()
    ident = client_identity()  # no certificate: 403 before the body is read
    posted = _body(MirrorUsagePoint)
    with rt.db.transaction() as s:
        mup_id, created = mup.post_mirror_usage_point(s, client_scope(s, ident), posted, now())  # type: ignore[arg-type]
    return no_content(201 if created else 204, uris.href(uris.MUP, mup_id=mup_id))


@bp.get(rule(uris.MUP))
@_uncached
def get_mup(s: Reader, scope: Scope, mup_id: int) -> object:
    return mup.mirror_usage_point(s, scope, mup_id)


@bp.post(rule(uris.MUP))
def post_readings(mup_id: int) -> Response:
    rt = runtime()
    ident = client_identity()
    posted = _readings_body()
    with rt.db.transaction() as s:
        location = mup.post_readings(s, client_scope(s, ident), mup_id, posted, now())
    return no_content(201, location)


# ------------------------------------------------------------------------------- read side


@bp.get(rule(uris.UPT_LIST))
@_uncached
def get_upt_list(s: Reader, scope: Scope) -> object:
    return mup.usage_point_list(s, scope, parse_page(request.args), runtime().poll_rate(s, "upt"))


@bp.get(rule(uris.UPT))
@_uncached
def get_upt(s: Reader, scope: Scope, upt_id: int) -> object:
    return mup.usage_point(s, scope, upt_id)


@bp.get(rule(uris.MR_LIST))
@_uncached
def get_mr_list(s: Reader, scope: Scope, upt_id: int) -> object:
    return mup.meter_reading_list(s, scope, upt_id, parse_page(request.args))


@bp.get(rule(uris.MR))
@_uncached
def get_mr(s: Reader, scope: Scope, upt_id: int, mr_id: int) -> object:
    return mup.meter_reading(s, scope, upt_id, mr_id)


@bp.get(rule(uris.RT))
@_uncached
def get_rt(s: Reader, scope: Scope, upt_id: int, mr_id: int) -> object:
    return mup.reading_type(s, scope, upt_id, mr_id)


@bp.get(rule(uris.RS_LIST))
@_uncached
def get_rs_list(s: Reader, scope: Scope, upt_id: int, mr_id: int) -> object:
    return mup.reading_set_list(s, scope, upt_id, mr_id, parse_page(request.args))


@bp.get(rule(uris.RS))
@_uncached
def get_rs(s: Reader, scope: Scope, upt_id: int, mr_id: int, rs_id: int) -> object:
    return mup.reading_set(s, scope, upt_id, mr_id, rs_id)


@bp.get(rule(uris.R_LIST))
@_uncached
def get_r_list(s: Reader, scope: Scope, upt_id: int, mr_id: int, rs_id: int) -> object:
    return mup.reading_list(s, scope, upt_id, mr_id, rs_id, parse_page(request.args))


@bp.get(rule(uris.R))
@_uncached
def get_r(s: Reader, scope: Scope, upt_id: int, mr_id: int, rs_id: int, r_id: int) -> object:
    return mup.reading(s, scope, upt_id, mr_id, rs_id, r_id)
