"""`derflex serve`: the Flask app under gunicorn (gthread workers: processes × threads, keep-alive).

TLS is terminated by gunicorn's workers with our own SSL context (TLS 1.2, CCM8, client
certificate required), built once per worker rather than per connection; the handshake and the
read of each request head happen on the worker's event loop with deadlines (server/front.py), so
silent or slow clients never hold a WSGI thread. In proxy mode the server
listens on plain HTTP and trusts the certificate header only from configured proxy addresses.
"""

from __future__ import annotations

import logging
import os
import signal
import ssl
from typing import Any

from gunicorn.app.base import BaseApplication

from server.bootstrap import tls_files
from server.config import Settings
from server.tls import server_context

log = logging.getLogger("derflex.serve")


def _gunicorn_options(
    settings: Settings, bind: str, workers: int, name: str, access_log: bool
) -> dict[str, Any]:
    """What both listeners share: gthread workers behind the event-driven front of
    `server.front` (handshakes and request heads read on the event loop, with deadlines), with
    keep-alive, logs to stderr."""
    return {
        "bind": [bind], "workers": workers, "worker_class": _front_worker(settings), "threads": settings.threads,
        "worker_connections": settings.max_connections, "keepalive": settings.keepalive_seconds,
        "timeout": 60, "graceful_timeout": 10, "proc_name": name,
        # gunicorn's control socket is one path per user: two servers would fight over it.
        "control_socket_disable": True,
        "accesslog": "-" if access_log else None, "errorlog": "-", "loglevel": "info",
    }


def _front_worker(settings: Settings) -> type:
    """The worker class with this server's limits (server/front.py says what each bounds)."""
    from server.front import FrontLimits, FrontWorker

    head = float(settings.request_head_timeout_seconds)
    return FrontWorker.with_limits(FrontLimits(
        handshake_timeout=float(settings.tls_handshake_timeout_seconds),
        head_timeout=head,
        io_timeout=head,
        max_pending_per_address=settings.max_pending_per_address,
        exempt_addresses=settings.trusted_proxies if settings.proxy_mode else (),
        max_body_prefetch=settings.max_body_bytes,
    ))


class DerflexServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, *, access_log: bool = False):
        self.settings = settings
        self.access_log = access_log
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options = _gunicorn_options(s, s.bind, s.workers, "derflex", self.access_log)
        options["forwarded_allow_ips"] = ",".join(s.trusted_proxies) if s.proxy_mode else "127.0.0.1"
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
                do_handshake_on_connect=False,  # server.front handshakes on the event loop
                ssl_context=_context_hook(s),
            )
        for key, value in options.items():
            if value is not None:
                self.cfg.set(key, value)

    def load(self) -> Any:
        from server.api.errors import answer_unparsable_requests_in
        from server.app import create_app

        answer_unparsable_requests_in("sep2")  # not gunicorn's HTML page for a bad request line
        return create_app(self.settings)


_SCHEDULERS: list[Any] = []  # the one candidate scheduler of this worker process


def _start_scheduler(settings: Settings) -> Any:
    def post_worker_init(_worker: Any) -> None:
        from server.db.session import Database
        from server.jobs.scheduler import FlexScheduler

        db = Database(settings.db_url)
        sched = FlexScheduler(db, reconcile_seconds=settings.scheduler_reconcile_seconds)
        sched.start()
        _SCHEDULERS.append(sched)
        if not settings.beckn_bind:  # no BPP worker to drain the outbox beside: drain it here
            from server.jobs.outbox import drainer_for

            drainer = drainer_for(settings, db, tls=tls_files(settings))
            if drainer is not None:
                drainer.start()
                _INLINE_DRAINERS.append(drainer)

    return post_worker_init


def _stop_scheduler(_server: Any, _worker: Any) -> None:
    while _INLINE_DRAINERS:
        _INLINE_DRAINERS.pop().stop()
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


def _worker_beside_listener(settings: Settings) -> bool:
    """Where the BecknWorker runs. PostgreSQL: a process of its own, so ACKs never wait behind
    callback work for the interpreter (measured p99 ACK at 100/s: 150 ms sharing the process, 35 ms
    apart). SQLite: a thread of the listener's worker, because two processes writing one SQLite
    file take turns through its busy handler's sleeps (p99 906 ms in one process, 11 s in two)."""
    return not settings.db_url.startswith("sqlite")


class BecknServer(BaseApplication):  # type: ignore[misc]
    """The BPP on its own listener (plain HTTP; a TLS proxy in front on a real network), one
    gthread worker process; on SQLite its BecknWorker runs in that process, started after the fork."""

    def __init__(self, settings: Settings, *, access_log: bool = False):
        self.settings = settings
        self.access_log = access_log
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options = _gunicorn_options(s, s.beckn_bind, 1, "derflex-beckn", self.access_log)
        if not _worker_beside_listener(s):
            options.update(post_worker_init=_start_inline_worker, worker_exit=_stop_inline_worker)
        for key, value in options.items():
            if value is not None:
                self.cfg.set(key, value)

    def load(self) -> Any:
        from server.api.errors import answer_unparsable_requests_in
        from server.app import create_beckn_app
        from server.jobs.outbox import drainer_for

        answer_unparsable_requests_in("beckn")  # a NACK, not gunicorn's HTML page
        app = create_beckn_app(self.settings, worker=not _worker_beside_listener(self.settings))
        facade = app.extensions["derflex.beckn"]
        _INLINE.append(facade)
        if facade.worker is not None:  # the outbox's pushes are queued where the worker sends them
            drainer = drainer_for(self.settings, facade.db, on_delivered=facade.worker.wake, tls=tls_files(self.settings))
            if drainer is not None:
                _INLINE_DRAINERS.append(drainer)
        return app


_INLINE: list[Any] = []  # the BPP app's facade in this process (its worker, on SQLite)
_INLINE_DRAINERS: list[Any] = []  # the outbox drainer beside that worker


def _start_inline_worker(_worker: Any) -> None:
    for facade in _INLINE:
        if facade.worker is not None:
            facade.worker.start()
    for drainer in _INLINE_DRAINERS:
        drainer.start()


def _stop_inline_worker(_server: Any, _worker: Any) -> None:
    for drainer in _INLINE_DRAINERS:
        drainer.stop()
    for facade in _INLINE:
        if facade.worker is not None:
            facade.worker.stop()


def _run_beckn_worker(settings: Settings) -> int:
    """The Beckn worker as a process of its own: the ACKs must not wait behind callback work for
    the interpreter (measured: p99 ACK 906 ms sharing a process at 100 requests/s, 13 ms alone).
    Stops on SIGTERM or when its parent (the BPP listener) is gone."""
    import threading

    from server.app import provider_of
    from server.db.session import Database
    from server.jobs.beckn import BecknWorker
    from server.jobs.outbox import drainer_for
    from server.services.bpp import keys as beckn_keys

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_a: stop.set())
    signal.signal(signal.SIGINT, lambda *_a: stop.set())
    db = Database(settings.db_url)
    worker = BecknWorker(db, provider_of(settings), beckn_keys.signing_key(settings), poll_s=0.1, eager=True)
    drainer = drainer_for(settings, db, on_delivered=worker.wake, tls=tls_files(settings))
    worker.start()
    if drainer is not None:
        drainer.start()
    log.info("Beckn worker running (pid %s)", os.getpid())
    try:
        stop.wait()
    finally:
        if drainer is not None:
            drainer.stop()
        worker.stop()
        db.dispose()
    return 0


def _follow_parent(parent: int) -> None:
    """Stop this process (gracefully) when the process that forked it is gone, however it died:
    a BPP left behind would keep its port and serve a database nobody else looks after."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="follow-parent", daemon=True).start()


def run(settings: Settings, *, access_log: bool = False) -> None:
    """Serve 2030.5 (this process's gunicorn) and, unless switched off, the BPP (a forked child
    with a gunicorn of its own: its listener takes no client certificates)."""
    parent = os.getpid()
    child = 0
    if settings.beckn_bind:
        from server.config import ConfigError
        from server.jobs.outbox import crash_point_from, schedule_from

        try:  # a bad outbox setting stops `serve` here with its reason, not later in a child
            schedule_from(os.environ)
            crash_point_from(os.environ)
        except ConfigError as exc:
            raise SystemExit(f"derflex: {exc}") from None
        child = os.fork()
        if child == 0:  # the BPP: serve until told to stop, then leave without the parent's cleanup
            code = 0
            _follow_parent(parent)
            listener = os.getpid()
            if _worker_beside_listener(settings) and os.fork() == 0:  # its worker, beside the listener
                _follow_parent(listener)
                try:
                    code = _run_beckn_worker(settings)
                except BaseException:
                    log.exception("the Beckn worker stopped")
                    code = 1
                finally:
                    os._exit(code)
            try:
                BecknServer(settings, access_log=access_log).run()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("the Beckn BPP stopped")
                code = 1
            finally:
                os._exit(code)
        log.info("Beckn BPP listening on http://%s/beckn (pid %s)", settings.beckn_bind, child)
    from server.ui import listener as ui_listener

    dashboard = ui_listener.fork(settings, access_log=access_log)  # the operators' HTTPS listener
    try:
        DerflexServer(settings, access_log=access_log).run()
    finally:
        # gunicorn's workers are forked from this process too and unwind through here: only the
        # process that made the BPP (and the dashboard) stops it
        if dashboard and os.getpid() == parent:
            ui_listener.stop(dashboard)
        if child and os.getpid() == parent:
            try:
                os.kill(child, signal.SIGTERM)
                os.waitpid(child, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
