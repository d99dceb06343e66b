"""`derflex serve`: the Flask app under gunicorn (gthread workers: processes × threads, keep-alive).

TLS is terminated by gunicorn's workers with our own SSL context (TLS 1.2, CCM8, client
certificate required), built once per worker rather than per connection. In proxy mode the server
listens on plain HTTP and trusts the certificate header only from configured proxy addresses.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from gunicorn.app.base import BaseApplication

from server.bootstrap import tls_files
from server.config import Settings
from server.tls import server_context

log = logging.getLogger("derflex.serve")


class DerflexServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, *, access_log: bool = False):
        self.settings = settings
        self.access_log = access_log
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options: dict[str, Any] = {
            "bind": [s.bind],
            "workers": s.workers,
            "worker_class": "gthread",
            "threads": s.threads,
            "keepalive": 75,
            "timeout": 60,
            "graceful_timeout": 10,
            "proc_name": "derflex",
            # gunicorn's control socket is one path per user: two servers would fight over it.
            "control_socket_disable": True,
            "accesslog": "-" if self.access_log else None,
            "errorlog": "-",
            "loglevel": "info",
            "forwarded_allow_ips": ",".join(s.trusted_proxies) if s.proxy_mode else "127.0.0.1",
        }
        if s.scheduler:
            # Every worker is a candidate; the database elects one (server.jobs.scheduler).
            options.update(post_worker_init=_start_scheduler(s), worker_exit=_stop_scheduler)
        if not s.proxy_mode:
            files = tls_files(s)
            options.update(
                certfile=str(files.cert),
                keyfile=str(files.key),
                ca_certs=str(files.trust),
                cert_reqs=ssl.CERT_REQUIRED,
                do_handshake_on_connect=True,
                ssl_context=_context_hook(s),
            )
        for key, value in options.items():
            if value is not None:
                self.cfg.set(key, value)

    def load(self) -> Any:
        from server.app import create_app

        return create_app(self.settings)


_SCHEDULERS: list[Any] = []  # the one candidate scheduler of this worker process


def _start_scheduler(settings: Settings) -> Any:
    def post_worker_init(_worker: Any) -> None:
        from server.db.session import Database
        from server.jobs.scheduler import FlexScheduler

        sched = FlexScheduler(Database(settings.db_url), reconcile_seconds=settings.scheduler_reconcile_seconds)
        sched.start()
        _SCHEDULERS.append(sched)

    return post_worker_init


def _stop_scheduler(_server: Any, _worker: Any) -> None:
    while _SCHEDULERS:
        sched = _SCHEDULERS.pop()
        sched.stop()
        sched.db.dispose()


def _context_hook(settings: Settings) -> Any:
    cached: list[ssl.SSLContext] = []

    def ssl_context(_conf: Any, _default_factory: Any) -> ssl.SSLContext:
        # gunicorn asks for a context per connection; build ours once per worker process.
        if not cached:
            files = tls_files(settings)
            cached.append(
                server_context(files.cert, files.key, files.trust, allow_gcm=settings.tls_allow_gcm)
            )
        return cached[0]

    return ssl_context


def run(settings: Settings, *, access_log: bool = False) -> None:
    DerflexServer(settings, access_log=access_log).run()
