"""IEEE 2030.5 wire format: typed models, pure parse/render, identities, URIs.

Imports nothing else of the project (checked by import-linter)."""
