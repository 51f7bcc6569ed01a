# The fastws.v1 wire forms (docs/protocol.md), made once per message, not per member.

cpdef enum:
    # Not a frame opcode (3 is reserved by RFC 6455): a text payload that is a
    # JSON value (a broadcast the send rule serialized), framed as OP_TEXT.
    # fastws.v1 tells it apart from a str so the client gets the type back.
    KIND_JSON = 3

cpdef bytes json_string(object text)
cpdef bytes room_message(object room, object position, int kind, object payload)
cpdef bytes sent_notice(object room, object position)
