"""Autobahn TestSuite conformance runs (kosoku) against a fastws echo server."""
