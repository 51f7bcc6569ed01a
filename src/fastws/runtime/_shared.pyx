# cython: language_level=3
"""What the connections of one runtime share, as the runtime layer reads it.

The sans-I/O rules read ``fastws.ws._connection.Shared`` (options as C values,
the clock, the counters) and hold no loop. ``RuntimeShared`` adds, typed, what
only the layers above read: the event loop, the serializers (``loads`` for
JSON events, ``dumps`` for sends), the room registry, the flusher, the set of
open sockets, the room limits and the ``json_events`` switch. The hub makes
one; every connection keeps it in the one ``_shared`` pointer of its core,
and the runtime's classes read it through a cast (``<RuntimeShared>self._shared``:
no check, no reference count), which is safe because ``Dispatcher`` accepts
nothing else.
"""

from fastws.ws._connection cimport Shared
from fastws.runtime._rooms cimport RoomRegistry
from fastws.runtime._flusher cimport Flusher

__all__ = ["RuntimeShared"]


cdef class RuntimeShared(Shared):
    """What the connections of one runtime share (the hub makes one).

    ``options``, ``clock`` and ``counters`` as for ``Shared``; ``loop`` the
    event loop; ``registry`` the ``RoomRegistry``; ``flusher`` the runtime's
    ``Flusher``; ``sockets`` the set of open WebSockets.
    """

    def __init__(self, options, *, loop, RoomRegistry registry not None,
                 Flusher flusher not None, set sockets not None, clock=None, counters=None):
        Shared.__init__(self, options, clock=clock, counters=counters)
        self.loop = loop
        self.loads = options.loads
        self.dumps = options.dumps
        self.registry = registry
        self.flusher = flusher
        self.sockets = sockets
        self.max_room_name = options.max_room_name
        self.max_rooms_per_socket = options.max_rooms_per_socket
        self.json_events = options.json_events
