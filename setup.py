"""Build the Cython extensions; everything else lives in pyproject.toml.

Environment knobs: FASTWS_DEBUG=1 (no optimisation, with symbols, for gdb),
FASTWS_PURE_PYTHON=1 (leave the HTTP path uncompiled), FASTWS_ANNOTATE=1 (write
``cython -a`` HTML next to the sources), FASTWS_BUILD_JOBS=N (compile N modules
at once; default: one per CPU).
"""
import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

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
def _dotted(path: Path) -> str:
    return ".".join(path.relative_to("src").with_suffix("").parts)


extensions = [
    Extension(_dotted(pyx), [str(pyx)], include_dirs=["src/fastws", str(pyx.parent)],
              extra_compile_args=extra,
              depends=["src/fastws/_bytes.h", "src/fastws/runtime/_epoll.h", "src/fastws/_constants.pxd"])
    for pyx in sorted(Path("src/fastws").rglob("*.pyx"))
]
# The per-connection HTTP path stays plain Python source, and is compiled too
# (the import system prefers the extension to the .py beside it): an upgrade
# costs about a tenth less, which is what lets new users in under load. Room
# history's append runs once per broadcast to a room that keeps history:
# compiled, 1.5 µs instead of 2.1.
# FASTWS_PURE_PYTHON=1 leaves them uncompiled, for debuggers and profilers.
COMPILED_PY = ("net.listener", "http.heads", "http.context", "http.handshake", "http.request",
               "http.upgrade", "http.protocol", "asgi.http_cycle", "asgi.websocket_cycle", "asgi.mount",
               "runtime.history")
if not os.environ.get("FASTWS_PURE_PYTHON"):
    extensions += [Extension(f"fastws.{name}", [f"src/fastws/{name.replace('.', '/')}.py"],
                             extra_compile_args=extra)
                   for name in COMPILED_PY]


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))    # what this process may use (containers, taskset)
    except AttributeError:                       # macOS has no affinity call
        return os.cpu_count() or 1


class CythonBuildExt(build_ext):
    """Translate to C only when compiling, then compile the modules in parallel.

    Translating when setup.py is loaded (as a module-level ``cythonize()`` does)
    would also run for ``sdist``: it would write generated C into src/ and ship
    it, so a wheel built from that sdist could compile C older than its .pyx.
    The sdist carries only .pyx/.pxd/.py; every build translates afresh.
    """

    def finalize_options(self):
        if self.parallel is None:
            # gcc -O3 on the large generated files is nearly all of an install's
            # time; the modules compile independently.
            self.parallel = int(os.environ.get("FASTWS_BUILD_JOBS") or _cpus())
        super().finalize_options()

    def build_extensions(self):
        # Imported here: only building needs Cython (it comes from
        # build-system.requires), not reading the project's metadata.
        from Cython.Build import cythonize

        translated = {ext.name: ext for ext in cythonize(
            self.extensions,
            include_path=["src"],      # so `cimport fastws.ws._frame` finds its .pxd
            compiler_directives={"language_level": 3, "embedsignature": True},
            annotate=bool(os.environ.get("FASTWS_ANNOTATE")),
            force=self.force,
        )}
        # Keep setuptools' own Extension objects (it has annotated them with
        # their full names for in-place and editable builds); swap in the C.
        for ext in self.extensions:
            ext.sources = translated[ext.name].sources
        super().build_extensions()


setup(ext_modules=extensions, cmdclass={"build_ext": CythonBuildExt})
