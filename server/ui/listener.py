"""The dashboard's own HTTPS listener: a gunicorn (one gthread worker) forked by `derflex serve`.

Browsers cannot speak the 2030.5 listener's TLS (CCM8 with a client certificate), so the dashboard
has a listener of its own: TLS 1.2 and 1.3 with the standard ECDHE + AES-GCM / ChaCha20 suites, the
server's certificate (the dev PKI's by default), no client certificate. It follows its parent out
however the parent dies, like the Beckn listener.
"""

from __future__ import annotations

import logging
import os
import signal
import ssl
import threading
import time
from typing import Any

from gunicorn.app.base import BaseApplication

from server.bootstrap import tls_files
from server.config import Settings

log = logging.getLogger("derflex.ui")
SUITES = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!MD5:!DSS"


def ui_context(cert: Any, key: Any) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(SUITES)
    ctx.load_cert_chain(str(cert), str(key))
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return ctx


class UiServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, *, access_log: bool = False):
        self.settings = settings
        self.access_log = access_log
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        files = tls_files(s)
        cached: list[ssl.SSLContext] = []

        def context(_conf: Any, _default: Any) -> ssl.SSLContext:
            if not cached:  # once per worker, not per connection
                cached.append(ui_context(files.cert, files.key))
            return cached[0]

        options = {
            "bind": [s.ui_bind], "workers": 1, "worker_class": "gthread", "threads": 4, "keepalive": 30,
            "timeout": 60, "graceful_timeout": 10, "proc_name": "derflex-ui", "control_socket_disable": True,
            "accesslog": "-" if self.access_log else None, "errorlog": "-", "loglevel": "info",
            "certfile": str(files.cert), "keyfile": str(files.key), "do_handshake_on_connect": False,
            "ssl_context": context,
        }
        for key, value in options.items():
            if value is not None:
                self.cfg.set(key, value)

    def load(self) -> Any:
        from server.ui.app import create_ui_app

        return create_ui_app(self.settings)


def _follow(parent: int) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="follow-parent", daemon=True).start()


def fork(settings: Settings, *, access_log: bool = False) -> int:
    """Start the dashboard's listener as a child process; its pid (0 when it is switched off)."""
    if not settings.ui_bind:
        return 0
    parent = os.getpid()
    child = os.fork()
    if child == 0:
        code = 0
        _follow(parent)
        try:
            UiServer(settings, access_log=access_log).run()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            log.exception("the dashboard stopped")
            code = 1
        finally:
            os._exit(code)
    log.info("dashboard listening on https://%s/ (pid %s)", settings.ui_bind, child)
    return child


def stop(child: int) -> None:
    if child:
        try:
            os.kill(child, signal.SIGTERM)
            os.waitpid(child, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
