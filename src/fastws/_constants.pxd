# Opcodes (RFC 6455 §5.2), close codes (§7.4.1) and connection states, named once.
# Every module cimports them; so can users (`from fastws._constants cimport OP_TEXT`).
# Python sees each as an IntEnum: fastws.Opcode, fastws.CloseCode, fastws.ReadyState.
# Mind the cost: turning one of these C constants into a Python object builds the
# IntEnum member (a lookup on the enum class, some 70 ns), so hot code casts it to
# <int> first wherever it becomes a Python value (a tuple item, a return value).

cpdef enum Opcode:
    OP_CONT = 0x0
    OP_TEXT = 0x1
    OP_BINARY = 0x2
    OP_CLOSE = 0x8
    OP_PING = 0x9
    OP_PONG = 0xA

cpdef enum CloseCode:
    CLOSE_NORMAL = 1000
    CLOSE_GOING_AWAY = 1001
    CLOSE_PROTOCOL_ERROR = 1002
    CLOSE_UNSUPPORTED_DATA = 1003
    CLOSE_NO_STATUS = 1005           # never on the wire: the close frame had no code
    CLOSE_ABNORMAL = 1006            # never on the wire: TCP went away without a close frame
    CLOSE_INVALID_DATA = 1007
    CLOSE_POLICY_VIOLATION = 1008
    CLOSE_MESSAGE_TOO_BIG = 1009
    CLOSE_MANDATORY_EXTENSION = 1010
    CLOSE_INTERNAL_ERROR = 1011
    CLOSE_SERVICE_RESTART = 1012
    CLOSE_TRY_AGAIN_LATER = 1013

cpdef enum ReadyState:
    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3
