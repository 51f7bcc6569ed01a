# What goes on the wire for a Python value: the send rule, then the frame.

cdef object payload_of(object data, object dumps, int *opcode)
cpdef tuple encode_payload(object data, object dumps)
cpdef bytes encode_message(object data, object dumps)
cdef bytes deflated_frame(object deflater, int opcode, object payload)
