"""``fastws.compression``, where ``DeflateOptions`` was documented first: the
permessage-deflate extension lives in ``fastws.deflate.permessage`` now, and this
name keeps working."""

from fastws.deflate.permessage import *  # noqa: F401,F403
from fastws.deflate.permessage import __all__  # noqa: F401
