"""The application factory: settings in, a Flask app out. Nothing is created at import time."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

from server.api import admin, caching, der, errors, sep2
from server.api import mup
from server.api import curves, lel
from server.api import admin_beckn, admin_der_programs, admin_flex, admin_outbox
from server.api import beckn as beckn_api
from server.api import admin_notifications, sub
from server.bootstrap import tls_files
from server.config import Settings
from server.db.session import Database
from server.jobs.beckn import BecknWorker
from server.services.bpp import keys as beckn_keys
from server.services.bpp.actions import Provider
from server.services.bpp.keys import KeyRegistry
from server.services.runtime import Runtime
from server.tls import ChainVerifier


def create_app(settings: Settings, db: Database | None = None) -> Flask:
    app = Flask("derflex")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    # 2030.5 resources answer the methods the standard gives them; OPTIONS is not among them.
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["derflex"] = Runtime(settings, db or Database(settings.db_url))
    if settings.proxy_mode:
        app.extensions["derflex.chain"] = ChainVerifier(tls_files(settings).trust)
    app.register_blueprint(sep2.bp)
    app.register_blueprint(der.bp)
    app.register_blueprint(mup.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(admin_der_programs.bp)
    app.register_blueprint(admin_flex.bp)
    app.register_blueprint(admin_outbox.bp)
    app.register_blueprint(admin_beckn.bp)
    app.register_blueprint(sub.bp)
    app.register_blueprint(admin_notifications.bp)
    for bp in (curves.bp, curves.admin_bp, lel.bp, lel.admin_bp):  # dc and lel, 2030.5 and admin
        app.register_blueprint(bp)
    caching.register(app)
    errors.register(app)
    return app


@dataclass
class BecknFacade:
    """What the Beckn blueprint needs: the database, who we are, the BAPs' keys, the worker."""

    db: Database
    provider: Provider
    keys: KeyRegistry
    worker: BecknWorker | None = None
    domains: tuple[str, ...] | None = None


def provider_of(settings: Settings) -> Provider:
    return Provider.of(settings)


def create_beckn_app(settings: Settings, db: Database | None = None, *, worker: bool = False) -> Flask:
    """The BPP's app (its own listener: BAPs have no 2030.5 client certificate). With `worker`,
    a BecknWorker is made (not started: the server starts it after forking)."""
    app = Flask("derflex.beckn")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False  # every answer of the BPP is ACK or NACK
    app.json.sort_keys = False  # type: ignore[attr-defined]
    database = db or Database(settings.db_url)
    provider = provider_of(settings)
    facade = BecknFacade(database, provider, KeyRegistry(settings), domains=(settings.beckn_domain,))
    if worker:
        # beside request threads: few senders, so deliveries do not crowd the ACKs out of the interpreter
        facade.worker = BecknWorker(database, provider, beckn_keys.signing_key(settings), senders=4)
    app.extensions["derflex.beckn"] = facade
    app.register_blueprint(beckn_api.bp)
    beckn_api.register_errors(app)
    return app
