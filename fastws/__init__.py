"""fastws: a Cython-accelerated WebSocket server for Python.

The byte-level RFC 6455 codec lives in ``fastws._frame`` (sans-I/O).
"""

from fastws._frame import ProtocolError

__all__ = ["ProtocolError", "__version__"]

__version__ = "0.1.0"
