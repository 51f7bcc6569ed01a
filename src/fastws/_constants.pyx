# cython: language_level=3
"""Opcodes, close codes and connection states as Python IntEnums.

The names are declared once, in ``_constants.pxd``; Cython modules cimport them as
C constants and this module gives Python the same values as ``Opcode``,
``CloseCode`` and ``ReadyState`` (numbered as in the browser API).
"""

__all__ = ["Opcode", "CloseCode", "ReadyState"]
