"""DER simulator: smart inverters, batteries, EV chargers and loads speaking 2030.5 over mTLS.

Uses only the wire packages of the server (`server.sep2`, `server.beckn`) and its TLS and dev-PKI
helpers, as a third-party client would: `devices` (pure device physics), `engine` (the device's
side of the event lifecycle), `client` (HTTP over TLS 1.2 CCM8), `reports` (the documents a device
sends), `agent` (one device), `fleet` (thousands in one process), `bap` + `bap_receiver` (a
Beckn app).
"""
