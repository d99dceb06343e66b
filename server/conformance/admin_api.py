"""A small client of derflex's admin API (JSON under /admin/api/v1, `Authorization: Bearer`).

Standard library only: the plugin runs inside cactus-client's environment, which has none of
derflex's dependencies. Behind TLS the admin API, like every derflex endpoint, wants a client
certificate from the server's CA, so the client presents one (an operator credential of the dev
PKI) and verifies the server against the SERCA.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any


class AdminRefused(Exception):
    """derflex answered an admin request with an error status (4xx/5xx)."""

    def __init__(self, method: str, path: str, status: int, detail: str):
        self.method, self.path, self.status, self.detail = method, path, status, detail
        super().__init__(f"derflex admin API {method} {path} answered {status}: {detail}")


@dataclass(frozen=True)
class AdminApi:
    """Where derflex's admin API is and how to authenticate to it."""

    base_url: str  # e.g. https://127.0.0.1:8443/admin/api/v1
    token: str
    cert_file: str | None = None  # client certificate (PEM, chain) for the TLS listener
    key_file: str | None = None
    ca_file: str | None = None  # the SERCA (or trust.pem) the server's certificate chains to
    timeout: float = 30.0

    def _context(self) -> ssl.SSLContext | None:
        if not self.base_url.startswith("https:"):
            return None
        ctx = ssl.create_default_context(cafile=self.ca_file)
        # 2030.5's suite first; derflex offers nothing else unless started with --allow-gcm
        ctx.set_ciphers("ECDHE-ECDSA-AES128-CCM8:ECDHE-ECDSA-AES128-GCM-SHA256")
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = False  # the dev PKI's server certificate names the host it was made for
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, parsed JSON or None). Raises AdminRefused for any status ≥ 400."""
        url = self.base_url.rstrip("/") + path
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._context()) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as err:
            raw = err.read()
            detail = raw.decode(errors="replace")
            try:
                problem = json.loads(raw)
                if isinstance(problem, dict):
                    detail = str(problem.get("detail") or problem.get("title") or detail)
            except ValueError:
                pass
            raise AdminRefused(method, path, err.code, detail) from None

    def get(self, path: str) -> Any:
        return self.request("GET", path)[1]

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, {} if body is None else body)[1]

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, body)[1]

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)[1]

    def query(self, path: str, **params: Any) -> Any:
        return self.get(path + "?" + urllib.parse.urlencode(params))
