"""Type stubs for the compiled frame codec (fastws/ws/_frame.pyx)."""

from typing import Any

OP_CONT: int
OP_TEXT: int
OP_BINARY: int
OP_CLOSE: int
OP_PING: int
OP_PONG: int
ERROR: int

class ProtocolError(Exception):
    """A client broke RFC 6455; ``code`` is the close code to answer with.

    ``reason`` is a short human-readable explanation, safe to send as the
    close reason (ASCII, under 123 bytes).
    """
    code: int
    reason: str
    def __init__(self, code: int, reason: str) -> None: ...

def is_valid_close_code(code: int) -> bool: ...

class FrameParser:
    mask_required: bool
    error: ProtocolError | None
    def __init__(self, *, max_message_size: int | None = ..., mask_required: bool = ...,
                 inflater: Any = ...) -> None: ...
    @property
    def max_message_size(self) -> int | None: ...
    @property
    def buffered(self) -> int: ...
    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[int, Any]]: ...

def encode_frame(opcode: int, payload: str | bytes | bytearray | memoryview, fin: bool = ...,
                 rsv1: bool = ..., mask_key: bytes | None = ...) -> bytes: ...
def frame_header(opcode: int, length: int, fin: bool = ..., rsv1: bool = ...) -> bytes: ...
def encode_close(code: int = ..., reason: str = ...) -> bytes: ...
def apply_mask(data: bytes | bytearray | memoryview, mask_key: bytes) -> bytes: ...
def apply_mask_inplace(buffer: bytearray | memoryview, mask_key: bytes) -> None: ...
