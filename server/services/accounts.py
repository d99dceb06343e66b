"""The dashboard's accounts: users with a role, their passwords, signed-in sessions, the sign-in
limit and the audit log (tables in server.db.ui; the web side is server.ui).

Passwords are hashed with scrypt (N=2**14, r=8, p=1, 16 random bytes of salt, 32 bytes out), the
KDF in Python's standard library: nothing more to install, memory-hard like argon2. A session is
32 random bytes in a cookie; only its SHA-256 is stored, beside the session's CSRF token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from server.db import ui as store
from server.services.errors import Conflict, Invalid, NotFound, check_text

ROLES = store.ROLES
RANK = {role: i for i, role in enumerate(ROLES)}
SESSION_SECONDS = 12 * 3600
# Sign-in limit: this many failures from one address, or for one name, within the period.
MAX_FAILURES = 5
FAILURE_PERIOD_S = 300
MIN_PASSWORD = 10
_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    out = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${_N}${_R}${_P}${b64(salt)}${b64(out)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, want = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(base64.b64decode(want)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(want))


_DUMMY = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


def _name(name: Any) -> str:
    text = check_text(name, "name", 64) or ""
    if not text.strip() or text != text.strip() or any(c.isspace() for c in text):
        raise Invalid("a user name is 1 to 64 characters without spaces")
    return text


def _role(role: Any) -> str:
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}")
    return str(role)


def _password(password: Any) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD or len(password) > 1024:
        raise Invalid(f"a password has {MIN_PASSWORD} to 1024 characters")
    return password


def add_user(session: Session, name: Any, role: Any, password: Any, now: int) -> dict[str, Any]:
    name, role, password = _name(name), _role(role), _password(password)
    if store.user_by_name(session, name) is not None:
        raise Conflict(f"user {name!r} exists (derflex ui user passwd / role to change it)")
    session.add(store.UiUser(name=name, role=role, password_hash=hash_password(password), disabled=False,
                             created_time=now, updated_time=now))
    return {"name": name, "role": role}


def _user(session: Session, name: Any) -> store.UiUser:
    user = store.user_by_name(session, _name(name))
    if user is None:
        raise NotFound(f"no dashboard user {name!r}")
    return user


def set_password(session: Session, name: Any, password: Any, now: int) -> None:
    user = _user(session, name)
    user.password_hash = hash_password(_password(password))
    user.updated_time = now
    store.end_sessions_of(session, user.id)


def set_role(session: Session, name: Any, role: Any, now: int) -> None:
    user = _user(session, name)
    user.role = _role(role)
    user.updated_time = now


def set_disabled(session: Session, name: Any, disabled: bool, now: int) -> None:
    user = _user(session, name)
    user.disabled = disabled
    user.updated_time = now
    if disabled:
        store.end_sessions_of(session, user.id)


def list_users(session: Session) -> list[dict[str, Any]]:
    return [{"name": u.name, "role": u.role, "disabled": u.disabled, "created": u.created_time}
            for u in store.users(session)]


# --------------------------------------------------------------------------------- sign-in

@dataclass(frozen=True)
class SignedIn:
    """Who a request is from: the user's name and role, and the session's CSRF token."""

    name: str
    role: str
    csrf: str

    def may(self, role: str) -> bool:
        return RANK[self.role] >= RANK[role]


class TooManyAttempts(Exception):
    """Sign-ins from this address (or for this name) are paused for a while."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign_in(session: Session, name: str, password: str, remote: str, now: int) -> tuple[str, SignedIn] | None:
    """A new session's cookie value and who it is, or None (wrong name or password). Raises
    TooManyAttempts once the limit is reached, before looking at the password."""
    store.prune_failures(session, now - FAILURE_PERIOD_S)
    name, remote = name[:64], remote[:64]
    by_remote, by_name = store.failures_since(session, name, remote, now - FAILURE_PERIOD_S)
    if by_remote >= MAX_FAILURES or by_name >= MAX_FAILURES:
        raise TooManyAttempts()
    user = store.user_by_name(session, name)
    ok = verify_password(password, user.password_hash if user is not None else _DUMMY)  # same work either way
    if user is None or user.disabled or not ok:
        store.add_failure(session, name, remote, now)
        return None
    store.prune_sessions(session, now)
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    store.add_session(session, _digest(token), user.id, csrf, now, now + SESSION_SECONDS)
    return token, SignedIn(user.name, user.role, csrf)


def signed_in(session: Session, token: str, now: int) -> SignedIn | None:
    found = store.live_session(session, _digest(token), now)
    if found is None:
        return None
    row, user = found
    return SignedIn(user.name, user.role, row.csrf)


def sign_out(session: Session, token: str) -> None:
    store.end_session(session, _digest(token))


# ------------------------------------------------------------------------------------ audit

def record(session: Session, who: SignedIn | str, action: str, target: str, before: Any, after: Any,
           now: int) -> None:
    """One change made through the dashboard, in the transaction that made it."""
    text = lambda v: None if v is None else json.dumps(v, sort_keys=True, default=str)  # noqa: E731
    name = who.name if isinstance(who, SignedIn) else who
    store.add_audit(session, now, name, action, target, text(before), text(after))


def audit_page(session: Session, start: int, limit: int) -> dict[str, Any]:
    total, rows = store.audit_page(session, start, limit)
    return {"all": total, "entries": [
        {"id": r.id, "at": r.at, "user": r.user_name, "action": r.action, "target": r.target,
         "before": None if r.before is None else json.loads(r.before),
         "after": None if r.after is None else json.loads(r.after)} for r in rows]}
