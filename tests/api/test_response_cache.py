"""The response cache's contract: repeated polls reuse the rendered body; a write through this
process is visible at once; a write through derflex anywhere else (another process, the CLI) is
visible within CHECK_EVERY seconds; only writes that bypass derflex wait for the cache lifetime;
errors and other callers' answers are never reused."""

from __future__ import annotations

import time

from sqlalchemy import update

from server.db.models import Device
from server.sep2 import codec
from server.sep2.models import EndDevice, Time
from server.services.sep2 import edev


def _write_elsewhere(database, device_id: int, category: str) -> None:  # noqa: ANN001
    """Through derflex's database layer, as another server process or the CLI would."""
    with database.transaction() as s:
        s.execute(update(Device).where(Device.id == device_id).values(device_category=category))


def _write_by_hand(database, device_id: int, category: str) -> None:  # noqa: ANN001
    """Plain SQL on a connection, bypassing derflex (no change counter moves)."""
    with database.engine.begin() as conn:
        conn.execute(update(Device).where(Device.id == device_id).values(device_category=category))


def _category(client, path: str) -> str | None:  # noqa: ANN001
    return codec.parse(client.get(path).data, EndDevice).device_category


def _registered(database, cast) -> int:  # noqa: ANN001
    with database.transaction() as s:
        return edev.register_out_of_band(s, cast["owner"].lfdi, 0).id


def test_a_write_by_another_process_is_seen_within_a_quarter_second(app, cast, client_for, database) -> None:  # noqa: ANN001
    from server.services.runtime import CHECK_EVERY

    dev = _registered(database, cast)
    c = client_for(cast["owner"])
    assert _category(c, f"/edev/{dev}") is None
    _write_elsewhere(database, dev, "0F")
    time.sleep(CHECK_EVERY + 0.05)
    assert _category(c, f"/edev/{dev}") == "0F"


def test_polls_reuse_the_body_and_hand_made_sql_waits_for_its_lifetime(app, cast, client_for, database, monkeypatch) -> None:  # noqa: ANN001
    clock = [1000.0]
    monkeypatch.setattr(app.extensions["derflex"], "clock", lambda: clock[0])
    dev = _registered(database, cast)
    c = client_for(cast["owner"])
    assert _category(c, f"/edev/{dev}") is None
    _write_by_hand(database, dev, "0F")
    time.sleep(0.3)
    assert _category(c, f"/edev/{dev}") is None  # still the cached body: nothing told derflex
    clock[0] += app.extensions["derflex"].settings.response_cache_seconds + 0.1
    assert _category(c, f"/edev/{dev}") == "0F"


def test_a_write_of_another_family_keeps_the_cached_documents(app, cast, client_for, database) -> None:  # noqa: ANN001
    """Only what a write changes is dropped: a counter of another family moving (as reading ingest
    does) leaves program and device documents cached."""
    from sqlalchemy import text

    from server.services.runtime import CHECK_EVERY

    dev = _registered(database, cast)
    c = client_for(cast["owner"])
    assert _category(c, f"/edev/{dev}") is None
    _write_by_hand(database, dev, "0F")  # invisible to derflex: the cached body stays as it was
    with database.engine.begin() as conn:  # some other family moves
        conn.execute(text("INSERT INTO change_counters (family, value) VALUES ('elsewhere', 1)"))
    time.sleep(CHECK_EVERY + 0.05)
    assert _category(c, f"/edev/{dev}") is None  # still cached: the sep2 family did not move


def test_a_write_through_this_process_is_seen_at_once(app, cast, client_for, database) -> None:  # noqa: ANN001
    c = client_for(cast["owner"])
    loc = c.post("/edev", data=codec.render(EndDevice(sfdi=cast["owner"].sfdi, changed_time=0))).headers["Location"]
    assert _category(c, loc) is None
    body = codec.render(EndDevice(lfdi=cast["owner"].lfdi, sfdi=cast["owner"].sfdi, changed_time=0, device_category="04"))
    assert c.put(loc, data=body).status_code == 204
    assert _category(c, loc) == "04"
    assert c.delete(loc).status_code == 403  # a refused write keeps the cache, and the device
    assert _category(c, loc) == "04"


def test_an_operator_write_is_seen_at_once(app, cast, client_for, database) -> None:  # noqa: ANN001
    from server.services import tokens

    with database.transaction() as s:
        token = tokens.create_token(s, "t", 0)
    dev = _registered(database, cast)
    c = client_for(cast["owner"])
    assert codec.parse(c.get(f"/edev/{dev}").data, EndDevice).post_rate is None
    resp = app.test_client().put(
        f"/admin/api/v1/devices/{dev}/post-rate", json={"seconds": 77}, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status_code == 204
    assert codec.parse(c.get(f"/edev/{dev}").data, EndDevice).post_rate == 77


def test_answers_are_per_caller_and_errors_are_not_kept(app, cast, client_for, database) -> None:  # noqa: ANN001
    dev = _registered(database, cast)
    assert client_for(cast["owner"]).get(f"/edev/{dev}").status_code == 200
    assert client_for(cast["other"]).get(f"/edev/{dev}").status_code == 404  # not the owner's cached body
    assert client_for(None).get(f"/edev/{dev}").status_code == 403
    other = client_for(cast["other"])
    assert other.get("/edev/999").status_code == 404
    with database.transaction() as s:
        edev.register_out_of_band(s, cast["other"].lfdi, 0)
    app.extensions["derflex"].changed()
    assert other.get("/edev?l=5").status_code == 200


def test_time_is_never_cached(app, cast, client_for, monkeypatch) -> None:  # noqa: ANN001
    import server.api.sep2 as views

    c = client_for(cast["owner"])
    monkeypatch.setattr(views, "now", lambda: 1_800_000_000)
    first = codec.parse(c.get("/tm").data, Time).current_time
    monkeypatch.setattr(views, "now", lambda: 1_800_000_007)
    assert codec.parse(c.get("/tm").data, Time).current_time == first + 7


def test_cache_can_be_switched_off(app, cast, client_for, database) -> None:  # noqa: ANN001
    rt = app.extensions["derflex"]
    rt.settings = rt.settings.with_(response_cache_seconds=0)
    dev = _registered(database, cast)
    c = client_for(cast["owner"])
    assert _category(c, f"/edev/{dev}") is None
    _write_by_hand(database, dev, "0F")
    assert _category(c, f"/edev/{dev}") == "0F"


def test_a_value_loaded_during_an_invalidation_is_not_kept() -> None:
    from server.services.cache import TTLCache

    cache: TTLCache[str] = TTLCache(60)

    def load_while_someone_writes() -> str:
        cache.invalidate()  # a write lands while this (old) value is being read
        return "old"

    assert cache.get("k", load_while_someone_writes) == "old"
    assert cache.get("k", lambda: "new") == "new"


def test_a_der_status_report_keeps_the_other_cached_documents(app, cast, client_for, database) -> None:  # noqa: ANN001
    """Devices report DERStatus every postRate: that moves the `der` family only, so the program
    and device documents every device polls stay cached (found in the simulator's review)."""
    from sqlalchemy import select

    from server.db.changes import ChangeCounter
    from server.scope import Scope
    from server.sep2.der import DERStatus
    from server.services.sep2 import der
    from server.services.sep2.der import DER_ID
    from server.services.runtime import CHECK_EVERY

    dev = _registered(database, cast)
    c = client_for(cast["owner"])
    assert _category(c, f"/edev/{dev}") is None
    _write_by_hand(database, dev, "0F")  # invisible to derflex: the cached body stays as it was
    with database.transaction() as s:  # another process takes a status report
        der.put(s, Scope.operator(), dev, DER_ID, DERStatus(reading_time=1), 1)
    with database.transaction() as s:  # the counter moves as the transaction commits
        assert s.scalar(select(ChangeCounter.value).where(ChangeCounter.family == "der")) == 1
    time.sleep(CHECK_EVERY + 0.05)
    assert _category(c, f"/edev/{dev}") is None  # still cached: only the der family moved


def test_the_cache_is_a_bounded_lru_that_never_empties_wholesale() -> None:
    from server.services.cache import TTLCache

    clock = [0.0]
    cache: TTLCache[str] = TTLCache(60, max_entries=3, clock=lambda: clock[0])
    loads: list[str] = []

    def load(key: str):  # noqa: ANN202
        return lambda: loads.append(key) or f"v-{key}"

    for key in ("a", "b", "c"):
        cache.get(key, load(key))
    assert cache.get("a", load("a")) == "v-a"  # a hit: "a" is now the most recently used
    cache.get("d", load("d"))  # full: the least recently used ("b") goes, nothing else
    assert len(cache) == 3 and cache.evictions == 1
    for key in ("a", "c", "d"):
        cache.get(key, load(key))
    assert loads == ["a", "b", "c", "d"]  # a, c and d were all still there
    cache.get("b", load("b"))
    assert loads[-1] == "b" and len(cache) == 3  # b came back by evicting a (least recent), not all
    clock[0] += 60.1
    cache.get("c", load("c"))
    assert loads[-1] == "c"  # expired: loaded again


def test_cached_documents_outlive_the_poll_rate_and_expiring_ones_keep_their_exact_lifetime() -> None:
    from server.config import Settings
    from server.services.cache import TTLCache

    settings = Settings()
    assert settings.response_cache_seconds >= settings.poll_rate + 300
    clock = [0.0]
    cache: TTLCache[str] = TTLCache(settings.response_cache_seconds, clock=lambda: clock[0])
    cache.get_until("doc", lambda: ("plain", None))
    cache.get_until("status", lambda: ("active", 12.5))  # true for 12.5 s (an event's next transition)
    clock[0] = settings.poll_rate + 60.0  # a device's next poll, late by a minute
    assert cache.get_until("doc", lambda: ("reloaded", None)) == "plain"
    clock[0] = 12.4
    assert cache.get_until("status", lambda: ("next", None)) == "active"
    clock[0] = 12.6
    assert cache.get_until("status", lambda: ("next", None)) == "next"


def test_the_response_cache_takes_its_bound_from_the_settings(app, cast, client_for, database) -> None:  # noqa: ANN001
    """With room for one document per family, polling a second one evicts the first (the least
    recently used); the other family's caches and the bound hold."""
    rt = app.extensions["derflex"]
    rt.settings = rt.settings.with_(response_cache_entries=1)
    rt._responses.clear()
    dev = _registered(database, cast)
    c = client_for(cast["owner"])
    assert _category(c, f"/edev/{dev}") is None
    _write_by_hand(database, dev, "0F")
    assert _category(c, f"/edev/{dev}") is None  # cached
    assert c.get(f"/edev/{dev}/fsa").status_code == 200  # a second document takes the only place
    cache = rt.responses("sep2")
    assert len(cache) == 1 and cache.evictions == 1
    assert _category(c, f"/edev/{dev}") == "0F"  # it was evicted: read again
