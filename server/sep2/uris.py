"""URI templates of every 2030.5 resource the server serves: routes and hrefs both come from here."""

from __future__ import annotations

DCAP = "/dcap"
TM = "/tm"
EDEV_LIST = "/edev"
EDEV = "/edev/{edev_id}"
EDEV_RG = "/edev/{edev_id}/rg"

# Paging (§ "List" query parameters): a bare GET of a list returns one entry, as the standard says.
DEFAULT_LIMIT = 1
MAX_LIMIT = 500


def edev(edev_id: int) -> str:
    return EDEV.format(edev_id=edev_id)


def edev_rg(edev_id: int) -> str:
    return EDEV_RG.format(edev_id=edev_id)
