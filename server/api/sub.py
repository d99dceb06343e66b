"""The 2030.5 Subscription function set: `/edev/{id}/sub` (GET, POST) and `/edev/{id}/sub/{s}`
(GET, DELETE). A POST answers 201 with the subscription's Location, or 200 with the same Location
when it updated one the client already had for that resource. Rules live in
server.services.sep2.sub; what is sent, in server.services.sep2.notify and server.jobs.notify."""

from __future__ import annotations

import re

from flask import Blueprint, Response, request

from server.api.client import client_identity, client_scope, now, runtime
from server.api.sep2 import _body, no_content, resource, rule
from server.db.repo import Reader
from server.scope import Scope
from server.sep2 import uris
from server.sep2.paging import parse_page
from server.sep2.sub import Subscription
from server.services.sep2 import sub

bp = Blueprint("sub", __name__)


@bp.get(rule(uris.SUB_LIST))
@resource(cache=False)  # changes with every subscription; not polled
def get_sub_list(s: Reader, scope: Scope, edev_id: int) -> object:
    return sub.subscription_list(s, scope, edev_id, parse_page(request.args), runtime().poll_rate(s, "sub"))


@bp.post(rule(uris.SUB_LIST))
def post_sub(edev_id: int) -> Response:
    rt = runtime()
    ident = client_identity()
    posted = _body(Subscription)
    with rt.db.transaction() as s:
        sub_id, created = sub.subscribe(s, client_scope(s, ident), edev_id, posted, now(),
                                        rt.settings.notification_allow, base_uri=_base_uri())
    return no_content(201 if created else 200, uris.href(uris.SUB, edev_id=edev_id, sub_id=sub_id))


def _base_uri() -> str:
    """This server as the client addressed it: 2030.5 is https whatever the listener (a proxy
    terminates TLS in proxy mode); a Host header that is not a plain host[:port] is not used."""
    host = request.host or ""
    return f"https://{host}" if _HOST.fullmatch(host) else ""


_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})(:[0-9]{1,5})?")


@bp.get(rule(uris.SUB))
@resource(cache=False)
def get_sub(s: Reader, scope: Scope, edev_id: int, sub_id: int) -> object:
    return sub.subscription(s, scope, edev_id, sub_id)


@bp.delete(rule(uris.SUB))
def delete_sub(edev_id: int, sub_id: int) -> Response:
    rt = runtime()
    ident = client_identity()
    with rt.db.transaction() as s:
        sub.unsubscribe(s, client_scope(s, ident), edev_id, sub_id)
    return no_content(204)
