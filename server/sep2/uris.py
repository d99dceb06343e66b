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

# DER function set (`der`): one DER per EndDevice today (id 1), its four documents.
DER_LIST = "/edev/{edev_id}/der"
DER = "/edev/{edev_id}/der/{der_id}"
DERCAP = "/edev/{edev_id}/der/{der_id}/dercap"
DERG = "/edev/{edev_id}/der/{der_id}/derg"
DERS = "/edev/{edev_id}/der/{der_id}/ders"
DERA = "/edev/{edev_id}/der/{der_id}/dera"

# Function set assignments (`fsa`) and DER programs (`derp`), seen through one EndDevice so that
# every list is that device's own (and cacheable per device).
FSA_LIST = "/edev/{edev_id}/fsa"
FSA = "/edev/{edev_id}/fsa/{fsa_id}"
DERP_LIST = "/edev/{edev_id}/fsa/{fsa_id}/derp"
DERP = "/edev/{edev_id}/derp/{derp_id}"
DERC_LIST = "/edev/{edev_id}/derp/{derp_id}/derc"
DERC = "/edev/{edev_id}/derp/{derp_id}/derc/{derc_id}"
ACTDERC = "/edev/{edev_id}/derp/{derp_id}/actderc"
DDERC = "/edev/{edev_id}/derp/{derp_id}/dderc"
# DER curves (`dc`) of a DER program, as a device sees them (curve-linked modes of its controls).
DC_LIST = "/edev/{edev_id}/derp/{derp_id}/dc"
DC = "/edev/{edev_id}/derp/{derp_id}/dc/{dc_id}"

# Log events (`lel`): a device posts what happened to it, and reads it back.
LEL_LIST = "/edev/{edev_id}/lel"
LEL = "/edev/{edev_id}/lel/{lel_id}"

# Responses (`rsps`): one ResponseSet per program; replyTo of its events.
RSPS_LIST = "/rsps"
RSPS = "/rsps/{rsps_id}"
RSP_LIST = "/rsps/{rsps_id}/rsp"
RSP = "/rsps/{rsps_id}/rsp/{rsp_id}"


def href(template: str, **ids: int) -> str:
    return template.format(**ids)

# Metering mirror (`mup`): devices post their meter readings here...
MUP_LIST = "/mup"
MUP = "/mup/{mup_id}"
# ...and read them back as usage points (`upt`).
UPT_LIST = "/upt"
UPT = "/upt/{upt_id}"
MR_LIST = "/upt/{upt_id}/mr"
MR = "/upt/{upt_id}/mr/{mr_id}"
RT = "/upt/{upt_id}/mr/{mr_id}/rt"
RS_LIST = "/upt/{upt_id}/mr/{mr_id}/rs"
RS = "/upt/{upt_id}/mr/{mr_id}/rs/{rs_id}"
R_LIST = "/upt/{upt_id}/mr/{mr_id}/rs/{rs_id}/r"
R = "/upt/{upt_id}/mr/{mr_id}/rs/{rs_id}/r/{r_id}"

# CSIP-AUS ConnectionPoint (`cp`): the site (NMI) an EndDevice is connected at.
CP = "/edev/{edev_id}/cp"

# Subscriptions (`sub`): a client's subscriptions live under the EndDevice they are for.
SUB_LIST = "/edev/{edev_id}/sub"
SUB = "/edev/{edev_id}/sub/{sub_id}"
