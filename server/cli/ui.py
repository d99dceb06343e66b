"""`derflex ui …`: the operator dashboard's accounts (server.services.accounts), straight on the
database. The dashboard itself is served by `derflex serve` on DERFLEX_UI_BIND."""

from __future__ import annotations

import json
import sys
import time

import click

from server.cli.context import Context, pass_ctx, run
from server.services import accounts


@click.group("ui")
def ui_group() -> None:
    """The operator dashboard (https://127.0.0.1:8444/ by default; DERFLEX_UI_BIND, "off" switches it off)."""


@ui_group.group("user")
def user_group() -> None:
    """Dashboard accounts: viewer (reads), operator (authors programs, cancels, dry-runs, replays),
    admin (also sees the users)."""


def _password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@user_group.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(accounts.ROLES), default="viewer", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@pass_ctx
def user_add(ctx: Context, name: str, role: str, password_stdin: bool) -> None:
    """Create a dashboard user (the password is asked for, or read with --password-stdin)."""
    password = _password(password_stdin)

    def add(s: object) -> dict[str, str]:
        view = accounts.add_user(s, name, role, password, int(time.time()))  # type: ignore[arg-type]
        accounts.record(s, "cli", "user.add", f"user {name}", None, view, int(time.time()))  # type: ignore[arg-type]
        return view

    view = run(ctx, add)
    click.echo(f"user {view['name']} ({view['role']}) created")


@user_group.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@pass_ctx
def user_passwd(ctx: Context, name: str, password_stdin: bool) -> None:
    """Set a user's password (their sessions end)."""
    password = _password(password_stdin)
    run(ctx, lambda s: accounts.set_password(s, name, password, int(time.time())))
    click.echo(f"user {name}: password changed")


@user_group.command("role")
@click.argument("name")
@click.argument("role", type=click.Choice(accounts.ROLES))
@pass_ctx
def user_role(ctx: Context, name: str, role: str) -> None:
    """Change a user's role."""
    run(ctx, lambda s: accounts.set_role(s, name, role, int(time.time())))
    click.echo(f"user {name}: {role}")


@user_group.command("disable")
@click.argument("name")
@click.option("--enable", is_flag=True, help="Enable the user again instead.")
@pass_ctx
def user_disable(ctx: Context, name: str, enable: bool) -> None:
    """Disable a user (their sessions end), or --enable them again."""
    run(ctx, lambda s: accounts.set_disabled(s, name, not enable, int(time.time())))
    click.echo(f"user {name}: {'enabled' if enable else 'disabled'}")


@user_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def user_list(ctx: Context, as_json: bool) -> None:
    """Every dashboard user with their role."""
    users = run(ctx, accounts.list_users)
    if as_json:
        click.echo(json.dumps(users, indent=2))
        return
    for u in users:
        click.echo(f"{u['name']:<24} {u['role']:<9}{' (disabled)' if u['disabled'] else ''}")
