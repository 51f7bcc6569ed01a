"""Reliability tests: slow consumers, silent peers, floods, guarded upgrades,
TLS, shutdown, fuzzing and the soak, each over 127.0.0.1 against a real server."""
