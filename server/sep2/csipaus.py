"""CSIP-AUS, the Australian profile of 2030.5: its extension elements (namespace
`https://csipaus.org/ns`, csipaus-ext.xsd / csipaus-core.xsd of the CSIP-AUS guide).

Where they live (csipaus-core.xsd extends these 2018 types, its elements after the 2030.5 ones):

- DERControlBase: opModImpLimW, opModExpLimW, opModGenLimW, opModLoadLimW (ActivePower; the
  site's import / export limits at the connection point, and a device's discharge / charge
  limits), declared in server/sep2/derp.py — so controls and DefaultDERControls carry them;
- DERCapability: doeModesSupported; DERSettings: doeModesEnabled (DOEControlType bitmaps,
  server/sep2/der.py);
- EndDevice: ConnectionPointLink (server/sep2/models.py) to the device's ConnectionPoint, a
  resource of this namespace (below) holding the site's connection point id: in Australia the
  NMI (National Metering Identifier).

The codec reads declared extensions wherever a client puts them and writes them, prefixed
`csipaus:`, after the 2030.5 elements (xsd/README.md); nested values (ActivePower's multiplier
and value) stay in the 2030.5 namespace, as the CSIP-AUS types are 2030.5 ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from server.sep2.models import Resource
from server.sep2.types import CSIPAUS_NS, HexType, String32, elem

# DOEControlType: HexBinary8 bitmap of the DOE modes a device supports (DERCapability) or has
# enabled (DERSettings). Bit 0 opModExpLimW, 1 opModImpLimW, 2 opModGenLimW, 3 opModLoadLimW;
# the other bits are reserved.
DOEControlType = HexType("DOEControlType", 1)
DOE_MODES = ("opModExpLimW", "opModImpLimW", "opModGenLimW", "opModLoadLimW")


@dataclass(kw_only=True, slots=True)
class ConnectionPoint(Resource):
    """`/edev/{id}/cp`: where the EndDevice is connected to the network (csipaus:ConnectionPoint,
    root element of the csipaus namespace). CSIP-AUS 1.1a onwards names the id
    `connectionPointId`; 1.1 called it `id`, and clients built on envoy's schema still send an
    empty `<csipaus:id/>` beside it, so both are read and only `connectionPointId` is written."""

    XML_NS: ClassVar[str] = CSIPAUS_NS  # the root element's namespace (the codec honours it)

    legacy_id: str | None = elem("id", String32, ns=CSIPAUS_NS)
    connection_point_id: str | None = elem("connectionPointId", String32, ns=CSIPAUS_NS)

    def posted_id(self) -> str | None:
        """The id a client sent: connectionPointId, or the 1.1 `id` when that is all there is."""
        for value in (self.connection_point_id, self.legacy_id):
            if value is not None and value.strip():
                return value.strip()
        return None


# ------------------------------------------------------------------------------------- the NMI

# AEMO's NMI: 10 characters of digits and capital letters other than I and O, optionally followed
# by its checksum digit (AEMO "National Metering Identifier Procedure", Appendix: NMI checksum).
_NMI_CHARACTERS = frozenset("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ")


def nmi_checksum(nmi: str) -> int:
    """AEMO's checksum digit of a 10-character NMI: from the right, the ASCII code of every other
    character (starting with the last) doubled, the decimal digits of all those numbers summed;
    the checksum brings the sum to the next multiple of ten."""
    total = 0
    for i, ch in enumerate(reversed(nmi)):
        code = ord(ch) * (2 if i % 2 == 0 else 1)
        total += sum(int(d) for d in str(code))
    return (10 - total % 10) % 10


def nmi_problem(text: str) -> str | None:
    """Why `text` is not an NMI (None when it is one): 10 characters of 0-9 and A-Z without I
    and O, or 11 whose last is the checksum digit of the first ten."""
    if len(text) not in (10, 11):
        return f"a connectionPointId (NMI) has 10 characters, or 11 with its checksum digit; {text[:40]!r} has {len(text)}"
    if not set(text[:10]) <= _NMI_CHARACTERS:
        return f"{text!r} is not an NMI: only digits and capital letters other than I and O"
    if len(text) == 11 and text[10] != str(nmi_checksum(text[:10])):
        return f"{text!r} is not an NMI: its checksum digit should be {nmi_checksum(text[:10])}"
    return None


__all__ = ["CSIPAUS_NS", "ConnectionPoint", "DOEControlType", "DOE_MODES", "nmi_checksum", "nmi_problem"]
