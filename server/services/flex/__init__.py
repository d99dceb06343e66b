"""The flexibility context: programs, grid nodes, enrollments and offers, window planning,
gathering and clearing, publishing, dry runs, measurement and settlement, reports and pictures.

Depends on the 2030.5 context (`sep2`) for DER programs and events; the Beckn BPP (`bpp`) builds
on it through its typed commands.
"""
