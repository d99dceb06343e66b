"""DER simulator: smart inverters, batteries, EV chargers and loads speaking 2030.5 over mTLS.

Uses only the wire package of the server (`server.sep2`), as a third-party client would.
The device models and fleets arrive with the simulator issue; nothing here yet.
"""
