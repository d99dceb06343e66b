"""The operator dashboard's own tables, in domain terms (server.ui; rules in server.services.accounts).

* `UiUser`: a person who may open the dashboard: a name, a role (viewer < operator < admin) and a
  password hash (scrypt with a random salt: `scrypt$n$r$p$salt$hash`, base64).
* `UiSession`: a signed-in browser. The cookie carries 32 random bytes; only their SHA-256 is kept
  here, with the CSRF token every form of that session must echo, and when it expires.
* `UiLoginFailure`: one failed sign-in (name and remote address), so sign-ins can be limited per
  address and per name across every process.
* `UiAudit`: every change made through the dashboard: who, what, on what, when, and the object
  before and after (JSON texts).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, delete, func, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from server.db.models import Base

BIG_ID = BigInteger().with_variant(Integer(), "sqlite")
ROLES = ("viewer", "operator", "admin")


class UiUser(Base):
    __tablename__ = "ui_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_time: Mapped[int] = mapped_column(BigInteger)
    updated_time: Mapped[int] = mapped_column(BigInteger)


class UiSession(Base):
    __tablename__ = "ui_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("ui_users.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_time: Mapped[int] = mapped_column(BigInteger)
    expires_time: Mapped[int] = mapped_column(BigInteger, index=True)


class UiLoginFailure(Base):
    __tablename__ = "ui_login_failures"
    __table_args__ = (Index("ix_ui_login_failures_remote", "remote", "at"), Index("ix_ui_login_failures_name", "name", "at"))

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    remote: Mapped[str] = mapped_column(String(64))
    at: Mapped[int] = mapped_column(BigInteger)


class UiAudit(Base):
    __tablename__ = "ui_audit"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    at: Mapped[int] = mapped_column(BigInteger, index=True)
    user_name: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    before: Mapped[str | None] = mapped_column(Text)
    after: Mapped[str | None] = mapped_column(Text)


# ---------------------------------------------------------------------------------------- users

def user_by_name(session: Session, name: str) -> UiUser | None:
    return session.scalars(select(UiUser).where(UiUser.name == name)).one_or_none()


def users(session: Session) -> Sequence[UiUser]:
    return session.scalars(select(UiUser).order_by(UiUser.name)).all()


# ------------------------------------------------------------------------------------- sessions

def add_session(session: Session, token_sha256: str, user_id: int, csrf: str, now: int, expires: int) -> None:
    session.add(UiSession(token_sha256=token_sha256, user_id=user_id, csrf=csrf, created_time=now,
                          expires_time=expires))


def live_session(session: Session, token_sha256: str, now: int) -> tuple[UiSession, UiUser] | None:
    row = session.execute(
        select(UiSession, UiUser).join(UiUser, UiUser.id == UiSession.user_id)
        .where(UiSession.token_sha256 == token_sha256, UiSession.expires_time > now, UiUser.disabled.is_(False))
    ).one_or_none()
    return None if row is None else (row[0], row[1])


def end_session(session: Session, token_sha256: str) -> None:
    session.execute(delete(UiSession).where(UiSession.token_sha256 == token_sha256))


def end_sessions_of(session: Session, user_id: int) -> None:
    session.execute(delete(UiSession).where(UiSession.user_id == user_id))


def prune_sessions(session: Session, now: int) -> None:
    session.execute(delete(UiSession).where(UiSession.expires_time <= now))


# ------------------------------------------------------------------------------------- sign-ins

def add_failure(session: Session, name: str, remote: str, now: int) -> None:
    session.add(UiLoginFailure(name=name[:64], remote=remote[:64], at=now))


def failures_since(session: Session, name: str, remote: str, since: int) -> tuple[int, int]:
    """Failed sign-ins since `since`: (from this address, for this name)."""
    by_remote = session.scalar(select(func.count()).select_from(UiLoginFailure)
                               .where(UiLoginFailure.remote == remote[:64], UiLoginFailure.at >= since)) or 0
    by_name = session.scalar(select(func.count()).select_from(UiLoginFailure)
                             .where(UiLoginFailure.name == name[:64], UiLoginFailure.at >= since)) or 0
    return by_remote, by_name


def prune_failures(session: Session, before: int) -> None:
    session.execute(delete(UiLoginFailure).where(UiLoginFailure.at < before))


def clear_failures(session: Session, name: str, remote: str) -> None:
    session.execute(delete(UiLoginFailure).where(or_(UiLoginFailure.name == name[:64],
                                                     UiLoginFailure.remote == remote[:64])))


# ---------------------------------------------------------------------------------------- audit

def add_audit(session: Session, at: int, user_name: str, action: str, target: str, before: str | None,
              after: str | None) -> None:
    session.add(UiAudit(at=at, user_name=user_name, action=action, target=target[:200], before=before, after=after))


def audit_page(session: Session, start: int, limit: int) -> tuple[int, Sequence[UiAudit]]:
    total = session.scalar(select(func.count()).select_from(UiAudit)) or 0
    rows = session.scalars(select(UiAudit).order_by(UiAudit.id.desc()).offset(start).limit(limit)).all()
    return total, rows
