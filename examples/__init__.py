"""Runnable fastws examples, one per section of the WebSocket plugin guide.

Each module defines ``app``; serve one with ``fastws examples.chat:app`` or
``python -m examples.chat`` from the repository root.
"""
