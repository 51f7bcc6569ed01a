# cython: language_level=3
"""The Flusher: one write per socket per loop iteration, and a ready queue that
is not starved.

Sockets that broadcasts reach outside their own callback register here once
(``add``); ``run``, scheduled with ``call_soon``, writes each of them once at
the end of the loop iteration, so W broadcasts to a socket cost one system
call, not W. This module decides when; what writing (or resuming) one socket
is belongs to the asyncio adapter, which subclasses ``Flusher``
(``runtime/_adapter.SocketFlusher``) and overrides ``_flush_each`` and
``_resume_each``: one C call per pass, none per socket.
"""

from fastws.ws._connection cimport monotonic

__all__ = ["Flusher"]

#: Seconds work may wait for the ready queue before busy sockets yield.
cdef double PRESSING_WAIT = 0.02


cdef class Flusher:
    """Writes every socket that broadcasts made dirty, once per loop iteration;
    and keeps the loop's ready queue from waiting too long for that.

    uvloop runs ready callbacks (this flush, asyncio tasks, a TLS transport's
    connection_made) only once libuv's poll phase is over, and libuv keeps
    polling while 1,024 sockets at a time are ready: under heavy load a pass can
    last a quarter of a second. So while such work waits (``press()``), a
    WebSocket that is served more than ``PRESSING_WAIT`` after it began waiting
    stops being read (``yielded``) until this runs: the poll phase then ends as
    soon as fewer than 1,024 sockets are ready, and this resumes them.
    """

    def __init__(self, loop):
        self.loop = loop
        self._dirty = []
        self._scheduled = False
        self._call_soon = loop.call_soon
        self.yielded = []

    cdef int add(self, object ws) except -1:
        self._dirty.append(ws)
        self.press()
        return 0

    cdef int press(self) except -1:
        """Work waits for the ready queue: make sure this runs, and soon."""
        if not self.pressing:
            self.pressing = True
            self.pressing_since = monotonic()
        if not self._scheduled:
            self._scheduled = True
            self._call_soon(self.run)
        return 0

    cdef bint overdue(self) except -1:
        """Work has waited for the ready queue longer than ``PRESSING_WAIT``:
        a socket served now should yield (stop being read until ``run``)."""
        return self.pressing and monotonic() - self.pressing_since > PRESSING_WAIT

    def press_soon(self):
        """``press()`` for Python code (a task or a TLS transport was started)."""
        self.press()

    def task_started(self):
        """One of fastws's tasks (an async handler's episode, an upgrade
        behind an async guard) is running: each of its steps waits for the
        ready queue, so press now, and while busy sockets are served, until
        it is done."""
        self.tasks += 1
        self.press()

    def task_done(self):
        """One of fastws's tasks finished."""
        self.tasks -= 1

    def run(self):
        """Flush the dirty sockets and read the yielded ones again (scheduled
        with call_soon: it runs when the ready queue does)."""
        cdef list dirty = self._dirty
        cdef list yielded = self.yielded
        self._dirty = []
        self._scheduled = False
        self.pressing = False
        if dirty:
            self._flush_each(dirty)
        if yielded:
            self.yielded = []
            self._resume_each(yielded)
        # Tasks still running are not pressed for again here: on an idle loop
        # that would schedule this every iteration and spin a core for as long
        # as a task awaits (a slow request, an async handler's database call).
        # Busy sockets press again instead (Adapter.data_received), which is
        # when a task's next step can be kept waiting.

    cdef int _flush_each(self, list dirty) except -1:
        """Write each socket of ``dirty`` once; one that fails must not strand
        the rest. (The adapter's SocketFlusher says how.)"""
        raise NotImplementedError("Flusher is subclassed by the socket adapter")

    cdef int _resume_each(self, list yielded) except -1:
        """Read each socket of ``yielded`` again. (The adapter's SocketFlusher
        says how.)"""
        raise NotImplementedError("Flusher is subclassed by the socket adapter")
