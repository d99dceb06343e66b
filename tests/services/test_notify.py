"""Subscriptions and the notifications they call for, on SQLite and PostgreSQL: who may subscribe
to what (aggregators for their devices, never for others), which changes queue which documents
(through the outbox's `notifications` consumer and the clock's scan), and what nobody asked for
costs nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from server.db import sub as store
from server.db.models import Device
from server.db.outbox import OutboxDelivery, OutboxFact
from server.jobs.outbox import OutboxDrainer
from server.scope import Role, Scope
from server.sep2 import codec
from server.sep2.derp import DERControlBase, DERControlList, DefaultDERControl
from server.sep2.models import EndDevice, EndDeviceList, Error
from server.sep2.sub import Subscription, parse_notification
from server.services import outbox
from server.services.sep2 import derp, notify, sub
from tests.builders import registered_cast

T0 = 1_800_000_000
URI = "https://127.0.0.1:9443/n"
ALLOW = ("loopback",)


def drain(database: Any, now: float) -> int:
    return OutboxDrainer(database, [notify.Notifications(900)], clock=lambda: now).drain()


def queued(database: Any) -> list[Any]:
    with database.transaction() as s:
        rows = s.scalars(select(store.Notification).order_by(store.Notification.id)).all()
        return [(r.subscription_id, r.key, parse_notification(r.body.encode(), (DERControlList, DefaultDERControl,
                                                                                 EndDevice, EndDeviceList)))
                for r in rows]


def statuses(note: Any) -> list[int]:
    return [c.event_status.current_status for c in note[1].der_controls]


@pytest.fixture
def world(database, cast, client_for) -> dict[str, Any]:  # noqa: ANN001
    ids = registered_cast(database, cast, client_for)
    with database.transaction() as s:
        program = derp.create_der_program(s, description="p", primacy=1, now=T0).id
        derp.add_members(s, program, [ids["managed"], ids["owner"]])
    return {**ids, "program": program}


def subscribe(s: Any, device_id: int, resource: str, *, limit: int) -> int:
    """The device itself subscribes (services.sep2.sub, as POST /edev/{id}/sub does)."""
    lfdi = s.scalar(select(Device.lfdi).where(Device.id == device_id))
    doc = Subscription(subscribed_resource=resource, limit=limit, notification_uri=URI)
    return sub.subscribe(s, Scope(Role.DEVICE, lfdi), device_id, doc, T0, ALLOW)[0]


def post_sub(client: Any, edev_id: int, resource: str, uri: str = URI) -> Any:
    body = codec.render(Subscription(subscribed_resource=resource, limit=5, notification_uri=uri))
    return client.post(f"/edev/{edev_id}/sub", data=body)


def test_an_aggregator_subscribes_for_its_devices_and_never_for_others(app, cast, client_for, world,  # noqa: ANN001
                                                                     database, sep2_schema) -> None:
    app.extensions["derflex"].settings = app.extensions["derflex"].settings.with_(notification_allow=ALLOW)
    agg, owner = client_for(cast["aggregator"]), client_for(cast["owner"])
    managed, other = world["managed"], world["owner"]
    derc = f"/edev/{managed}/derp/{world['program']}/derc"
    resp = post_sub(agg, managed, derc)
    assert resp.status_code == 201, resp.headers
    assert post_sub(agg, other, f"/edev/{other}/derp/{world['program']}/derc").status_code == 404
    assert post_sub(owner, managed, derc).status_code == 404  # another's device: not found
    # the owner cannot smuggle a subscription to another's resource under its own EndDevice either
    resp = post_sub(owner, other, derc)
    assert resp.status_code == 404
    # and the aggregator sees only its own subscriptions
    listed = client_for(cast["managed"]).get(f"/edev/{managed}/sub?l=10")
    assert listed.status_code == 200
    sep2_schema(listed.data)
    with database.transaction() as s:
        assert s.scalar(select(func.count()).select_from(store.Subscription)) == 1


def test_events_reach_the_lists_they_show_in_created_superseded_active_cancelled(database, world) -> None:  # noqa: ANN001
    m, p = world["managed"], world["program"]
    with database.transaction() as s:
        subscribe(s, m, f"/edev/{m}/derp/{p}/derc", limit=5)
        first = derp.create_events(s, p, start=T0 + 100, duration=600, now=T0,
                                   controls=[(m, DERControlBase(op_mod_max_lim_w=5000))])[0].mrid
    drain(database, T0 + 1)
    with database.transaction() as s:
        second = derp.create_events(s, p, start=T0 + 200, duration=600, now=T0 + 2,
                                    controls=[(None, DERControlBase(op_mod_max_lim_w=3000))])[0].mrid
    drain(database, T0 + 3)
    assert notify.scan_events(database, T0 + 50, default_rate=900) == 0  # nothing started yet
    assert notify.scan_events(database, T0 + 150, default_rate=900) == 1  # the first one started
    assert notify.scan_events(database, T0 + 150, default_rate=900) == 0  # the cursor moved on
    assert notify.scan_events(database, T0 + 250, default_rate=900) == 1  # the second supersedes it
    with database.transaction() as s:
        derp.cancel_event(s, second, T0 + 300)
    drain(database, T0 + 301)
    notes = queued(database)
    assert [k for _, k, _ in notes] == [notes[0][1], notes[1][1], f"start:{first}", f"start:{second}", notes[4][1]]
    created, second_created, active, superseded, cancelled = (n for _, _, n in notes)
    assert statuses(created) == [0]
    assert {c.mrid: c.event_status.current_status for c in second_created[1].der_controls} == {first: 0, second: 0}
    assert statuses(active) == [1, 0] or statuses(active) == [0, 1]
    by_mrid = {c.mrid: c.event_status.current_status for c in superseded[1].der_controls}
    assert by_mrid == {first: 4, second: 1}
    assert {c.mrid: c.event_status.current_status for c in cancelled[1].der_controls}[second] == 2
    for _, _, (note, _) in notes:
        assert (note.status, note.subscribed_resource) == (0, f"/edev/{m}/derp/{p}/derc")


def test_nothing_subscribed_costs_no_notification_work(database, world) -> None:  # noqa: ANN001
    with database.transaction() as s:
        derp.set_default_control(s, world["program"], {"opModMaxLimW": 9000})
        derp.create_events(s, world["program"], start=T0 + 100, duration=60, now=T0,
                           controls=[(None, DERControlBase(op_mod_max_lim_w=1000))])
    with database.transaction() as s:
        kinds = s.scalars(select(OutboxFact.kind)).all()
        assert outbox.DefaultControlChanged.kind not in kinds  # not even recorded
        assert outbox.ControlCreated.kind in kinds  # control facts are kept all the same …
        assert s.scalar(select(func.count()).select_from(OutboxDelivery)
                        .where(OutboxDelivery.consumer == outbox.NOTIFICATIONS)) == 0  # … for nobody


def test_a_notification_carries_the_resource_as_it_is_and_the_same_document_goes_once(database, world) -> None:  # noqa: ANN001
    """What is queued is the resource when its change is handed over: changes handed over together
    give one notification with the latest state; a change that leaves the document as it was gives
    none."""
    m, p = world["managed"], world["program"]
    with database.transaction() as s:
        subscribe(s, m, f"/edev/{m}/derp/{p}/dderc", limit=1)
    for batch, at in (((9000,), 1), ((8000,), 2), ((8000,), 3), ((7000, 6000), 4)):
        for limit in batch:
            with database.transaction() as s:
                derp.set_default_control(s, p, {"opModMaxLimW": limit})
        drain(database, T0 + at)
    got = [n[1].der_control_base.op_mod_max_lim_w for _, _, n in queued(database)]
    assert got == [9000, 8000, 6000]


def test_a_removed_device_ends_its_subscriptions_with_status_4(database, world, cast, client_for, app) -> None:  # noqa: ANN001
    app.extensions["derflex"].settings = app.extensions["derflex"].settings.with_(notification_allow=ALLOW)
    agg = client_for(cast["aggregator"])
    m = world["managed"]
    assert post_sub(agg, m, f"/edev/{m}").status_code == 201
    assert agg.delete(f"/edev/{m}").status_code == 204
    [(_, key, (note, resource))] = queued(database)
    assert (key, note.status, resource) == ("deleted", 4, None)
    with database.transaction() as s:
        assert s.scalar(select(func.count()).select_from(store.Subscription)) == 0


def test_condition_and_exi_and_unknown_resources_are_refused(app, cast, client_for, world) -> None:  # noqa: ANN001
    app.extensions["derflex"].settings = app.extensions["derflex"].settings.with_(notification_allow=ALLOW)
    owner, o = client_for(cast["owner"]), world["owner"]
    for resource in (f"/edev/{o}/rg", "/dcap", f"/edev/{o}/der", f"/edev/{o}/derp/999/derc", "/mup"):
        resp = post_sub(owner, o, resource)
        assert resp.status_code in (400, 404), resource
        codec.parse(resp.data, Error)
    body = codec.render(Subscription(subscribed_resource=f"/edev/{o}", encoding=1, limit=1, notification_uri=URI))
    assert owner.post(f"/edev/{o}/sub", data=body).status_code == 400


def test_a_default_can_be_subscribed_to_before_an_operator_sets_one(database, world, app, cast, client_for) -> None:  # noqa: ANN001
    """Every DERProgram links its DefaultDERControl: empty (version 0) until an operator sets one,
    then the operator's under the same mRID, version 1 — and its subscribers hear of it."""
    m, p = world["managed"], world["program"]
    device = client_for(cast["managed"])
    empty = codec.parse(device.get(f"/edev/{m}/derp/{p}/dderc").data, DefaultDERControl)
    assert (empty.version, empty.der_control_base) == (0, DERControlBase())
    with database.transaction() as s:
        subscribe(s, m, f"/edev/{m}/derp/{p}/dderc", limit=1)
        derp.set_default_control(s, p, {"opModMaxLimW": 9000})
    drain(database, T0 + 1)
    [(_, _, (_, got))] = queued(database)
    assert (got.mrid, got.version, got.der_control_base.op_mod_max_lim_w) == (empty.mrid, 1, 9000)


def test_notifications_name_their_subscription_by_absolute_uri(app, cast, client_for, world, database) -> None:  # noqa: ANN001
    app.extensions["derflex"].settings = app.extensions["derflex"].settings.with_(notification_allow=ALLOW)
    agg, m = client_for(cast["aggregator"]), world["managed"]
    resp = post_sub(agg, m, f"/edev/{m}/derp/{world['program']}/dderc")
    assert resp.status_code == 201
    with database.transaction() as s:
        derp.set_default_control(s, world["program"], {"opModMaxLimW": 4000})
    drain(database, T0 + 1)
    [(_, _, (note, _))] = queued(database)
    assert note.subscription_uri == "https://localhost" + resp.headers["Location"]
