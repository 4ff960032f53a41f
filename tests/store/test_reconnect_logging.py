"""asyncpg's pool warns with a full traceback on every failed reconnect; ours is one line at WARNING
and the traceback only at DEBUG."""

from __future__ import annotations

import logging

import pytest

from emwatch.store.db import quiet_reconnect_tracebacks

POOL_LOGGER = "asyncpg.pool"


def _warn_with_traceback() -> None:
    try:
        raise ConnectionRefusedError(111, "Connect call failed")
    except ConnectionRefusedError:
        logging.getLogger(POOL_LOGGER).warning("Failed to restore the pool connection floor; retrying",
                                               exc_info=True)


@pytest.mark.parametrize(("level", "tracebacks_at_debug"), [(logging.WARNING, 0), (logging.DEBUG, 1)])
def test_a_reconnect_warning_is_one_line_and_its_traceback_goes_to_debug(
    caplog: pytest.LogCaptureFixture, level: int, tracebacks_at_debug: int
) -> None:
    quiet_reconnect_tracebacks()
    quiet_reconnect_tracebacks()  # installing twice filters once
    caplog.set_level(level, logger=POOL_LOGGER)
    _warn_with_traceback()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [(r.getMessage(), r.exc_info, r.exc_text) for r in warnings] == [(
        "Failed to restore the pool connection floor; retrying"
        " (ConnectionRefusedError: [Errno 111] Connect call failed)", None, None,
    )]
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and r.exc_info]
    assert len(debug) == tracebacks_at_debug


def test_errors_keep_their_traceback(caplog: pytest.LogCaptureFixture) -> None:
    quiet_reconnect_tracebacks()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger(POOL_LOGGER).error("unexpected", exc_info=True)
    assert caplog.records[-1].exc_info is not None
