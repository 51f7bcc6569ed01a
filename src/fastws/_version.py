"""The one place the release number lives.

pyproject.toml reads it from here at build time (``[tool.setuptools.dynamic]``),
statically, without importing the package: a fresh checkout has no compiled
modules for ``fastws/__init__`` to import yet. Keep it a plain string literal.
"""

__version__ = "0.2.0"
