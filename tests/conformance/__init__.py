"""Tests of server/conformance: the CSIP-AUS harness plugin and driver."""
