"""Who is asking: the frozen scope every repository call is filtered by.

Built once per request from the client certificate (devices and aggregators) or from an admin
token (operators). Never taken from a request body.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Role(str, Enum):
    DEVICE = "device"
    AGGREGATOR = "aggregator"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class Scope:
    role: Role
    lfdi: str | None = None  # the certificate's LFDI; None for an operator's token
    sfdi: int | None = None

    @classmethod
    def operator(cls) -> "Scope":
        return cls(Role.OPERATOR)
