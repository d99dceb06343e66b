"""Mappers of the 2030.5 context: stored rows and domain values to the wire models of server.sep2,
and back, one module per function set (`derp`, `der`, `edev`, `fsa`, `rsps`, `mup`).

Pure: no session, no query, no scope — the services decide what is visible and read it; a mapper
only says how it looks on the wire. The hrefs come from server.sep2.uris. A row is anything with
the attributes named (an ORM object or a Core Row).
"""
