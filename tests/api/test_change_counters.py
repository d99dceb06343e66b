"""Change counters move on every commit that changes what cached documents show — ORM changes
and DML statements alike — and on nothing else (reads, tokens, rolled-back work)."""

from __future__ import annotations

import pytest

from server.db import changes, repo
from server.scope import Scope
from server.services.sep2 import devices, edev
from server.services import tokens
from server.services.errors import Conflict


def sep2(database) -> int:  # noqa: ANN001
    return changes.read(database.engine).get(changes.SEP2, 0)


def test_counters_follow_writes_only(database) -> None:  # noqa: ANN001
    start = sep2(database)
    with database.transaction() as s:
        dev = edev.register_out_of_band(s, "AB" * 20, 0)  # ORM insert
    assert sep2(database) == start + 1
    with database.transaction() as s:
        devices.set_poll_rate(s, "dcap", 60)  # an INSERT .. ON CONFLICT statement
        devices.set_post_rate(s, dev.id, 30, 1)  # and an ORM update, same transaction: one bump
    assert sep2(database) == start + 2
    with database.transaction() as s:
        repo.list_devices(s, Scope.operator(), 0, 10)
        tokens.create_token(s, "not shown in any document", 0)
    assert sep2(database) == start + 2
    with pytest.raises(Conflict), database.transaction() as s:
        edev.register_out_of_band(s, "CD" * 20, 0)
        edev.register_out_of_band(s, "CD" * 20, 0)
    assert sep2(database) == start + 2


def test_a_change_to_a_loaded_object_without_an_explicit_flush_counts(database) -> None:  # noqa: ANN001
    """The commit's own autoflush comes after before_commit; the hook must flush first."""
    from server.db.models import Device

    with database.transaction() as s:
        dev_id = edev.register_out_of_band(s, "AB" * 20, 0).id
    start = sep2(database)
    with database.transaction() as s:
        s.get(Device, dev_id).post_rate = 5  # no flush, no DML statement: only the commit flushes
    assert sep2(database) == start + 1
