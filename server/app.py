"""The application factory: settings in, a Flask app out. Nothing is created at import time."""

from __future__ import annotations

from flask import Flask

from server.api import admin, caching, der, errors, sep2
from server.api import mup
from server.api import admin_flex, admin_programs
from server.bootstrap import tls_files
from server.config import Settings
from server.db.session import Database
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
    app.register_blueprint(admin_programs.bp)
    app.register_blueprint(admin_flex.bp)
    caching.register(app)
    errors.register(app)
    return app
