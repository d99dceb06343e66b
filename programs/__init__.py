"""The flexibility domain: programs, peak windows, enrollments, bid curves, clearing, M&V, settlement.

Plain data and functions with `now` passed in; imports no web, database, scheduler or XML library
(checked by import-linter). Arrives with the programs issue; nothing here yet.
"""
