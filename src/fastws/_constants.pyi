"""Type stubs for the compiled constants (src/fastws/_constants.pyx, .pxd)."""

from enum import IntEnum

class Opcode(IntEnum):
    """WebSocket frame opcodes (RFC 6455 §5.2)."""
    OP_CONT = 0x0
    OP_TEXT = 0x1
    OP_BINARY = 0x2
    OP_CLOSE = 0x8
    OP_PING = 0x9
    OP_PONG = 0xA

class CloseCode(IntEnum):
    """Close codes (RFC 6455 §7.4.1, and 1012 and 1013 from IANA's registry),
    for ``ws.close(code)`` and what the ``close`` event reports. 1005 and 1006
    never go on the wire: close handlers get 1005 for a close frame without a
    code and 1006 when TCP went away without one."""
    CLOSE_NORMAL = 1000
    CLOSE_GOING_AWAY = 1001
    CLOSE_PROTOCOL_ERROR = 1002
    CLOSE_UNSUPPORTED_DATA = 1003
    CLOSE_NO_STATUS = 1005
    CLOSE_ABNORMAL = 1006
    CLOSE_INVALID_DATA = 1007
    CLOSE_POLICY_VIOLATION = 1008
    CLOSE_MESSAGE_TOO_BIG = 1009
    CLOSE_MANDATORY_EXTENSION = 1010
    CLOSE_INTERNAL_ERROR = 1011
    CLOSE_SERVICE_RESTART = 1012
    CLOSE_TRY_AGAIN_LATER = 1013

class ReadyState(IntEnum):
    """A connection's state, numbered as the browser's ``WebSocket.readyState``."""
    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3
