"""The CSIP-AUS conformance harness (cactus-client) against derflex: `make conformance`.

cactus-client (PyPI, Python 3.12) runs the public CSIP-AUS server test procedures as virtual
clients over TLS. Some steps ask an operator to arrange the server first ("admin instructions":
register this device, create this control, ...); the harness hands those to admin plugins found
through the `cactus_client.admin` entry point. This package is derflex's plugin and the driver
around the harness:

    admin_api.py      a small HTTPS client for derflex's admin API (/admin/api/v1, bearer token)
    operator.py       each admin instruction mapped to admin API calls; refuses by name what
                      derflex cannot do yet
    plugin.py         the cactus_client.admin plugin (hooks: setup, teardown, instruction)
    notifications.py  runs cactus-client-notifications (the harness's webhook service) on TLS
    report.py         reads cactus-client's run folders into per-procedure results and tables
    driver.py         `make conformance`: its own Python 3.12 environment, a fresh `derflex serve`
                      per procedure, client certificates from the dev PKI, the report

It talks to derflex only over HTTP(S) and the `derflex` command line: nothing here imports the
rest of `server` (an import-linter contract in pyproject.toml says so). Modules import
cactus-client and aiohttp only inside the functions that need them, so the package imports in
derflex's own environment too.
"""
