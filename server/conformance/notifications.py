"""cactus-client-notifications (the harness's webhook service) on the local machine, over TLS.

cactus-client has no receiver of its own: for every subscription it asks a cactus-client-
notifications service for a fresh webhook URI, subscribes with it, and later collects what the
server under test POSTed there. The service is a small aiohttp app meant to sit behind a TLS
proxy; this module serves it on two sockets instead:

    https://HOST:PORT/webhook/{id}   where derflex delivers notifications: TLS 1.2 with a server
                                     certificate of the dev PKI (CCM8 first), a client certificate
                                     asked for but not required; this base is the notificationURI's
    http://HOST:ADMIN_PORT/manage/…  where the harness creates, collects and disables endpoints

Run it with cactus-client's Python (it needs aiohttp and cactus-client-notifications):

    python -m server.conformance.notifications --port 9443 --admin-port 9080 \
        --cert certs/server.pem --key certs/server.key --trust certs/trust.pem

`--plain` serves the webhook over http instead (a derflex that is asked to notify plain-http
receivers). It prints one line "ready" when both sockets listen.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl


def tls_context(cert: str, key: str, trust: str | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-ECDSA-AES128-CCM8:ECDHE-ECDSA-AES128-GCM-SHA256")
    ctx.load_cert_chain(cert, key)
    if trust:
        ctx.load_verify_locations(trust)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


async def serve(args: argparse.Namespace) -> None:
    scheme = "http" if args.plain else "https"
    os.environ["SERVER_URL"] = f"{scheme}://{args.host}:{args.port}"
    os.environ["APP_PORT"] = str(args.port)
    from aiohttp import web  # cactus-client's environment only
    from cactus_client_notifications.server.main import create_app

    runner = web.AppRunner(create_app())
    await runner.setup()
    ctx = None if args.plain else tls_context(args.cert, args.key, args.trust)
    await web.TCPSite(runner, args.host, args.port, ssl_context=ctx).start()
    await web.TCPSite(runner, args.host, args.admin_port).start()
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="webhook port (the notificationURI's)")
    parser.add_argument("--admin-port", type=int, required=True, help="plain-http port for the harness")
    parser.add_argument("--cert", help="server certificate chain (PEM) for the webhook's TLS")
    parser.add_argument("--key", help="its private key")
    parser.add_argument("--trust", help="CA file to verify a client certificate against, if one is sent")
    parser.add_argument("--plain", action="store_true", help="serve the webhook over plain http")
    args = parser.parse_args(argv)
    if not args.plain and not (args.cert and args.key):
        parser.error("--cert and --key are required unless --plain")
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
