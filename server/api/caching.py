"""The request hooks that keep every process's caches true (see services/runtime.py): before a
request, notice changes other processes made; after a successful write, notice at once what it
changed (the counters say which families). One place for every blueprint."""

from __future__ import annotations

from flask import Flask, Response, request

from server.api.client import runtime


def register(app: Flask) -> None:
    @app.before_request
    def _sync_caches() -> None:
        runtime().sync()

    @app.after_request
    def _forget_cached_answers(resp: Response) -> Response:
        if request.method not in ("GET", "HEAD") and resp.status_code < 400:
            runtime().sync(force=True)
        return resp
