# Writes straight to a socket's descriptor, past the transport: one send(2) of
# a buffer, or one sendmsg(2) of the queued frames as they are (no joined copy).
# Declarations and inline C only, compiled into the module that cimports them
# (runtime/_adapter.pyx, which decides when a direct write is safe): a write
# costs no call across modules.
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM
from libc.string cimport memset
from posix.uio cimport iovec

cdef extern from "sys/socket.h":
    struct msghdr:
        void *msg_name
        unsigned int msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    ssize_t send(int fd, const void *buf, size_t n, int flags) nogil
    ssize_t sendmsg(int fd, const msghdr *msg, int flags) nogil
    int MSG_NOSIGNAL

cdef enum:
    # Frames per sendmsg; a longer queue is joined into one buffer instead.
    DIRECT_IOV = 64


cdef inline ssize_t send_buffer(int fd, object data, Py_ssize_t size) noexcept:
    # ``size`` bytes of the bytes object ``data``: the count the kernel took,
    # or -1 with errno set. MSG_NOSIGNAL: a closed peer is an error, not SIGPIPE.
    return send(fd, PyBytes_AS_STRING(data), size, MSG_NOSIGNAL)


cdef inline ssize_t send_frames(int fd, list frames, Py_ssize_t n) noexcept:
    # The first ``n`` (at most DIRECT_IOV) bytes objects of ``frames`` in one
    # sendmsg: the count the kernel took, or -1 with errno set.
    cdef iovec iov[DIRECT_IOV]
    cdef msghdr msg
    cdef object piece
    cdef Py_ssize_t i
    for i in range(n):
        piece = <object>PyList_GET_ITEM(frames, i)
        iov[i].iov_base = PyBytes_AS_STRING(piece)
        iov[i].iov_len = PyBytes_GET_SIZE(piece)
    memset(&msg, 0, sizeof(msg))
    msg.msg_iov = iov
    msg.msg_iovlen = n
    return sendmsg(fd, &msg, MSG_NOSIGNAL)
