"""Type stubs for the compiled counters (src/fastws/ws/_counters.pyx)."""

class Counters:
    skipped: int
    dropped: int
    slow_consumers: int
    def snapshot(self) -> dict[str, int]: ...
