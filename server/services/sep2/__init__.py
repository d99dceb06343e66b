"""The 2030.5 context: the function sets devices and aggregators reach over TLS (dcap, tm, edev,
der, fsa, derp, rsps, mup) and the operator's surface over them (devices, DER programs, events).

Depends on nothing of the other contexts: flexibility (`flex`) and the Beckn BPP (`bpp`) build on it.
"""
