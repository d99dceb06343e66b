"""derflex's admin plugin for cactus-client (entry point group `cactus_client.admin`).

Installed with `pip install 'derflex[conformance]'` beside cactus-client (Python 3.12); the harness
finds it through the entry point and calls its hooks: `admin_setup` once per procedure run,
`admin_instruction` for each admin instruction of a step (before the step's first attempt),
`admin_teardown` at the end. The work itself is server.conformance.operator's.

Configuration, from the environment (the driver sets all of it):

    DERFLEX_CONFORMANCE_ADMIN_URL    admin API base; default: the dcap URI's origin + /admin/api/v1
    DERFLEX_CONFORMANCE_ADMIN_TOKEN  bearer token (or DERFLEX_CONFORMANCE_ADMIN_TOKEN_FILE)
    DERFLEX_CONFORMANCE_ADMIN_CERT   client certificate (+ _KEY) for derflex's TLS listener
    DERFLEX_CONFORMANCE_ADMIN_CA     the server's trust anchor; default: the harness's serca_pem_file
    DERFLEX_CONFORMANCE_FRESH_SERVER "1" when every procedure gets a fresh server (the driver's way)
    DERFLEX_CONFORMANCE_LOG          a file that gets one line per instruction and what was done

An instruction derflex cannot carry out raises: cactus-client then fails that step at once with
the message (a returned failure would be ignored and the step retried until the run's timeout).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import urllib.parse
from typing import Any

from server.conformance.admin_api import AdminApi, AdminRefused
from server.conformance.operator import Client, Operator, Unsupported

try:  # cactus-client lives in its own Python 3.12 environment; derflex's imports this module too
    from cactus_client.admin import hookimpl
except ImportError:  # pragma: no cover - exercised in derflex's own environment

    def hookimpl(func: Any = None, **_options: Any) -> Any:
        return func if func is not None else (lambda f: f)


logger = logging.getLogger(__name__)

class DerflexCannot(Exception):
    """Raised to the harness: the step needs something derflex does not do (yet) or refused."""


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def admin_api_from_env(dcap_uri: str, serca: str | None) -> AdminApi:
    """The admin API the environment describes (see the module docstring)."""
    url = _env("DERFLEX_CONFORMANCE_ADMIN_URL")
    if url is None:
        parts = urllib.parse.urlsplit(dcap_uri)
        url = f"{parts.scheme}://{parts.netloc}/admin/api/v1"
    token = _env("DERFLEX_CONFORMANCE_ADMIN_TOKEN")
    token_file = _env("DERFLEX_CONFORMANCE_ADMIN_TOKEN_FILE")
    if token is None and token_file is not None:
        with open(token_file, encoding="utf-8") as fh:
            token = fh.read().strip()
    if not token:
        raise DerflexCannot(
            "derflex's conformance plugin needs an admin API token: set DERFLEX_CONFORMANCE_ADMIN_TOKEN "
            "(or _TOKEN_FILE, e.g. <derflex home>/var/admin-token); `make conformance` does it for you"
        )
    return AdminApi(
        base_url=url,
        token=token,
        cert_file=_env("DERFLEX_CONFORMANCE_ADMIN_CERT"),
        key_file=_env("DERFLEX_CONFORMANCE_ADMIN_KEY"),
        ca_file=_env("DERFLEX_CONFORMANCE_ADMIN_CA") or serca,
    )


def client_from_config(alias: str, config: Any) -> Client:
    """A harness ClientConfig as the operator's Client (its certificate's LFDI computed)."""
    from cactus_client.sep2 import lfdi_from_cert_file

    return Client(
        alias=alias,
        kind=str(config.type),
        lfdi=config.lfdi.upper(),
        cert_lfdi=lfdi_from_cert_file(config.certificate_file).upper(),
        pin=int(config.pin),
        max_watts=int(config.max_watts),
        cert_file=config.certificate_file,
        key_file=config.key_file,
    )


def explain(exc: Exception) -> str:
    """The message the harness shows for a refused or impossible instruction: derflex's own answer
    (which names the field it refused), or what derflex has no admin operation for."""
    if isinstance(exc, AdminRefused):
        return str(exc)
    return f"derflex cannot do this: {exc}"


class DerflexAdminPlugin:
    """The hooks cactus-client calls; one Operator per procedure run."""

    def __init__(self) -> None:
        self.operator: Operator | None = None
        self.clients: dict[str, Client] = {}

    def _log(self, line: str) -> None:
        logger.info("[derflex-admin] %s", line)
        path = _env("DERFLEX_CONFORMANCE_LOG")
        if path:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    @hookimpl
    async def admin_setup(self, context: Any) -> Any:
        from cactus_client.model.execution import ActionResult

        try:
            api = admin_api_from_env(context.server_config.device_capability_uri, context.server_config.serca_pem_file)
            self.operator = Operator(api, fresh_server=_env("DERFLEX_CONFORMANCE_FRESH_SERVER") == "1")
            self.clients = {alias: client_from_config(alias, c) for alias, c in context.client_configs.items()}
            for line in await asyncio.to_thread(self.operator.setup, self.clients.values()):
                self._log(f"setup: {line}")
        except (DerflexCannot, AdminRefused, OSError) as exc:
            self._log(f"setup FAILED: {exc}")
            return ActionResult.failed(f"derflex admin setup failed: {exc}")
        return ActionResult.done()

    @hookimpl
    async def admin_teardown(self, context: Any) -> Any:
        from cactus_client.model.execution import ActionResult

        self.operator = None  # the driver throws the whole server away after each procedure
        return ActionResult.done()

    @hookimpl
    async def admin_instruction(self, instruction: Any, step: Any, context: Any) -> Any:
        from cactus_client.model.execution import ActionResult

        if self.operator is None:
            raise DerflexCannot("admin_setup did not run")
        alias = instruction.client or next(iter(context.client_configs))
        kind = str(getattr(instruction.type, "value", instruction.type))
        where = f"{step.source.id} / {kind} {dict(instruction.parameters)} for {alias}"
        try:
            done = await asyncio.to_thread(self.operator.apply, kind, instruction.parameters, self.clients[alias])
        except (Unsupported, AdminRefused) as exc:
            message = explain(exc)
            self._log(f"{where}: FAILED: {message}")
            raise DerflexCannot(message) from None
        self._log(f"{where}: {done}")
        return ActionResult.done()
