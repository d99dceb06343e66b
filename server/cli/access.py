"""`derflex admin device …`, `derflex admin client …`, `derflex admin connection-points`: removing
a device, a device's CSIP-AUS connection point (NMI), and revoking or restoring a client
certificate's access. The same services as the admin API (server.services.sep2.devices,
connection_points); like every operator command they work on the database directly, and
running servers follow within a quarter second (change counters)."""

from __future__ import annotations

from typing import Any

import click

from server.cli.context import Context, echo_json, now, pass_ctx, run


@click.group("device")
def device_group() -> None:
    """One device: remove it, or set its connection point (the CSIP-AUS site, its NMI)."""


@device_group.command("remove")
@click.argument("device_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def device_remove(ctx: Context, device_id: int, yes: bool) -> None:
    """Remove DEVICE_ID and its 2030.5 data: DER documents, connection point, memberships, events
    addressed to it alone and every Response it posted, its mirror usage points with their
    readings, log events and subscriptions. Its subscribers are told first. Refused while it has
    flexibility enrollments, cleared setpoints or settlement rows (they are kept). The LFDI may
    register again afterwards."""
    from server.services.sep2 import devices

    if not yes:
        click.confirm(f"Remove device {device_id} and its 2030.5 data?", abort=True)
    view = run(ctx, lambda s: devices.remove_device(s, device_id, now()))
    click.echo(f"removed device {view['id']} ({view['lfdi']})")


@device_group.command("connection-point")
@click.argument("device_id", type=int)
@click.argument("connection_point_id", required=False)
@click.option("--clear", is_flag=True, help="Remove the device's connection point.")
@pass_ctx
def device_connection_point(ctx: Context, device_id: int, connection_point_id: str | None, clear: bool) -> None:
    """Set DEVICE_ID's connection point to CONNECTION_POINT_ID (an NMI: 10 characters, or 11 with
    its checksum digit), or --clear it."""
    from server.services.sep2 import connection_points

    if clear == (connection_point_id is not None):
        raise click.UsageError("give CONNECTION_POINT_ID or --clear")
    view = run(ctx, lambda s: connection_points.set_for_device(s, device_id, connection_point_id))
    click.echo(f"device {view['device_id']}: connection point {view['connection_point_id'] or '(none)'}")


@click.command("connection-points")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def connection_points_list(ctx: Context, limit: int, as_json: bool) -> None:
    """List connection points (sites) with the devices at each."""
    from server.services.sep2 import connection_points

    result = run(ctx, lambda s: connection_points.list_connection_points(s, 0, limit))
    if as_json:
        echo_json(result)
        return
    click.echo(f"{result['all']} connection point(s)")
    for cp in result["connection_points"]:
        click.echo(f"  {cp['connection_point_id']:<12} devices {', '.join(str(d) for d in cp['device_ids'])}")


@click.group("client")
def client_group() -> None:
    """Client certificates' access: revoke (refused at once by every running server), restore, list."""


@client_group.command("revoke")
@click.argument("lfdi")
@click.option("--reason", help="Why (kept with the revocation, at most 200 characters).")
@pass_ctx
def client_revoke(ctx: Context, lfdi: str, reason: str | None) -> None:
    """Refuse every 2030.5 request of the certificate with this LFDI (403) until restored. Its
    devices and data stay."""
    from server.services.sep2 import devices

    view = run(ctx, lambda s: devices.revoke_client(s, lfdi, reason, now()))
    click.echo(f"revoked {view['lfdi']}")


@client_group.command("restore")
@click.argument("lfdi")
@pass_ctx
def client_restore(ctx: Context, lfdi: str) -> None:
    """Give a revoked certificate its access back."""
    from server.services.sep2 import devices

    run(ctx, lambda s: devices.restore_client(s, lfdi))
    click.echo(f"restored {lfdi.upper()}")


@client_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def client_list(ctx: Context, as_json: bool) -> None:
    """List revoked certificates."""
    from server.services.sep2 import devices

    rows: list[dict[str, Any]] = run(ctx, devices.revoked_clients)
    if as_json:
        echo_json({"revoked_clients": rows})
        return
    click.echo(f"{len(rows)} revoked certificate(s)")
    for r in rows:
        click.echo(f"  {r['lfdi']}  since {r['revoked_time']}  {r['reason'] or ''}")
