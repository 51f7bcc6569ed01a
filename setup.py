"""Build the Cython extensions; everything else lives in pyproject.toml."""
import os
import sys
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

# -O3 lets gcc vectorise the byte loops in _bytes.h; FASTWS_DEBUG=1 builds
# with assertions and no optimisation for gdb.
if os.environ.get("FASTWS_DEBUG"):
    extra = ["-O0", "-g"]
elif sys.platform == "win32":
    extra = ["/O2"]
else:
    extra = ["-O3"]

# The package lives under src/ so that running `python -m fastws...` from a
# checkout imports the installed (compiled) package, never the bare sources.
extensions = [
    Extension(f"fastws.{pyx.stem}", [str(pyx)], include_dirs=["src/fastws"],
              extra_compile_args=extra, depends=["src/fastws/_bytes.h", "src/fastws/_constants.pxd"])
    for pyx in sorted(Path("src/fastws").glob("*.pyx"))
]
# The per-connection HTTP path stays plain Python source, and is compiled too
# (the import system prefers the extension to the .py beside it): an upgrade
# costs about a tenth less, which is what lets new users in under load.
# FASTWS_PURE_PYTHON=1 leaves them uncompiled, for debuggers and profilers.
COMPILED_PY = ("protocol", "listener", "handshake", "context")
if not os.environ.get("FASTWS_PURE_PYTHON"):
    extensions += [Extension(f"fastws.{name}", [f"src/fastws/{name}.py"], extra_compile_args=extra)
                   for name in COMPILED_PY]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["src"],      # so `cimport fastws._frame` finds its .pxd
        compiler_directives={"language_level": 3, "embedsignature": True},
        annotate=bool(os.environ.get("FASTWS_ANNOTATE")),
    ),
)
