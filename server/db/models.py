"""Tables, named for what they hold in the domain; mapped to 2030.5 objects only in services."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Device(Base):
    """A registered end device (an EndDevice on the wire), identified by its certificate's LFDI."""

    __tablename__ = "devices"
    __table_args__ = {"info": {"cache_family": "sep2"}}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lfdi: Mapped[str] = mapped_column(String(40), unique=True)
    sfdi: Mapped[int] = mapped_column(BigInteger, index=True)
    device_category: Mapped[str | None] = mapped_column(String(8))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    post_rate: Mapped[int | None] = mapped_column(BigInteger)  # UInt32 on the wire
    changed_time: Mapped[int] = mapped_column(BigInteger)
    registered_time: Mapped[int] = mapped_column(BigInteger)
    # Who registered it: its own LFDI (in-band), an aggregator's LFDI, or "operator" (out-of-band).
    registered_by: Mapped[str] = mapped_column(String(40))
    # The aggregator that manages it, if any: that aggregator's scope includes this device.
    aggregator_lfdi: Mapped[str | None] = mapped_column(String(40), index=True)
    pin: Mapped[int | None] = mapped_column(Integer)
    pin_time: Mapped[int | None] = mapped_column(BigInteger)
    label: Mapped[str | None] = mapped_column(String(100))
    # CSIP-AUS ConnectionPoint: the site's connection point id (the NMI), set by the device or
    # an operator; the devices of one site share it.
    connection_point_id: Mapped[str | None] = mapped_column(String(32), index=True)


class Aggregator(Base):
    """A client certificate allowed to register and manage devices other than itself."""

    __tablename__ = "aggregators"
    __table_args__ = {"info": {"cache_family": "sep2"}}

    lfdi: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    created_time: Mapped[int] = mapped_column(BigInteger)


class RevokedClient(Base):
    """A client certificate (by its LFDI) an operator has shut out: every 2030.5 request it makes
    is refused (403) until the operator restores it. Its data stay as they are."""

    __tablename__ = "revoked_clients"
    __table_args__ = {"info": {"cache_family": "sep2"}}  # every process drops its cached answers

    lfdi: Mapped[str] = mapped_column(String(40), primary_key=True)
    revoked_time: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(String(200))


class PollRate(Base):
    """An operator's run-time override of a resource's pollRate (seconds)."""

    __tablename__ = "poll_rates"
    __table_args__ = {"info": {"cache_family": "sep2"}}

    resource: Mapped[str] = mapped_column(String(32), primary_key=True)
    seconds: Mapped[int] = mapped_column(BigInteger)  # UInt32 on the wire


class ChangeCounter(Base):
    """Bumped by every commit that changes what a family of cached documents shows, so each
    server process can tell cheaply that its cached answers are stale (see db.changes)."""

    __tablename__ = "change_counters"

    family: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class AdminToken(Base):
    """A bearer token for the admin API; only its SHA-256 is stored."""

    __tablename__ = "admin_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_time: Mapped[int] = mapped_column(BigInteger)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
