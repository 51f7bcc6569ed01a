"""``fastws.server``, where ``Server`` and ``run`` were documented first: they
live in ``fastws.serve.server`` now, and this name keeps working."""

from fastws.serve.server import *  # noqa: F401,F403
from fastws.serve.server import __all__  # noqa: F401
