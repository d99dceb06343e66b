"""Services: one module per 2030.5 function set (dcap, tm, edev) plus admin and identity.

Each takes a session, the caller's Scope and `now`, and returns wire models or raises ServiceError.
"""
