"""``fastws.context``, where ``Context``, ``Response`` and ``HTTPError`` were
documented first: they live in ``fastws.http.context`` now, and this name keeps
working."""

from fastws.http.context import *  # noqa: F401,F403
from fastws.http.context import __all__  # noqa: F401
