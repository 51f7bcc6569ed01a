# cython: language_level=3
"""Counters: the running totals one runtime keeps, as plain C integers.

Each WebSocket holds a C reference to its hub's Counters and bumps a field
with a C increment, so counting costs no Python call and no lock on the hot
path; ``app.skipped``, ``app.dropped`` and (later) the metrics exporter read
the fields when asked.
"""

__all__ = ["Counters"]


cdef class Counters:
    """Totals for one runtime (one app on one event loop)."""

    def snapshot(self):
        """Every counter, by name (for reports and tests)."""
        return {"skipped": self.skipped, "dropped": self.dropped,
                "slow_consumers": self.slow_consumers}

    def __repr__(self):
        return f"Counters({self.snapshot()})"
