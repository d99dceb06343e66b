"""derflex server: IEEE 2030.5 DER server with demand-flexibility programs and a Beckn facade."""
