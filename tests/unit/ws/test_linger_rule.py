"""The lingering-close rule both lingering closes follow (``linger_step``): the
WebSocket's after its close frame and an HTTP connection's after an answer
that ends it. Their behaviour over real sockets is in
tests/reliability/test_lingering.py."""

from __future__ import annotations

import pytest

from fastws.ws._connection import (LINGER_ABORT, LINGER_CLOSE, LINGER_QUIET, LINGER_WAIT,
                                   linger_step)


@pytest.mark.parametrize("now, deadline, last_rx, step", [
    (10.0, 20.0, 9.5, LINGER_WAIT),                     # input arrived just now
    (10.0, 20.0, 10.0 - LINGER_QUIET, LINGER_CLOSE),    # quiet for exactly LINGER_QUIET
    (10.0, 20.0, 0.0, LINGER_CLOSE),
    (20.0, 20.0, 19.9, LINGER_ABORT),                   # the deadline wins, even while input arrives
    (25.0, 20.0, 0.0, LINGER_ABORT),
])
def test_linger_step(now, deadline, last_rx, step):
    assert linger_step(now, deadline, last_rx) == step


def test_the_steps_are_distinct():
    assert len({LINGER_WAIT, LINGER_CLOSE, LINGER_ABORT}) == 3
