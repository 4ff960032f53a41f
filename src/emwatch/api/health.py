"""Whether the service can still do its job, and what happens when it cannot: the health check says
why, and the HTTP server is asked to stop so that the process exits non-zero and its supervisor
restarts it (safe: fixes are acknowledged to the broker only after commit, on a persistent session)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

EXIT_FAILED = 1  # the process exit code after a fatal failure


class ServiceHealth:
    """A fatal failure, once there is one, and the hook that asks the server to shut down."""

    def __init__(self) -> None:
        self.failure: str | None = None
        self.shutdown_requested = False
        self.stopping = False  # a normal shutdown has begun: the pipeline's end is no failure
        self._request_shutdown: Callable[[], None] | None = None

    def on_shutdown_request(self, request: Callable[[], None]) -> None:
        """Who to ask to stop the process (the CLI passes `lambda: setattr(server, "should_exit", True)`)."""
        self._request_shutdown = request
        if self.failure is not None:
            self._shutdown()

    def fail(self, reason: str) -> None:
        """Record a fatal failure (the first one wins) and ask the server to stop."""
        if self.failure is None:
            self.failure = reason
            log.critical("%s; /healthz answers 503 and the service stops", reason)
        self._shutdown()

    @property
    def exit_code(self) -> int:
        """0 while nothing fatal happened, EXIT_FAILED after."""
        return 0 if self.failure is None else EXIT_FAILED

    def watch_pipeline(self, task: asyncio.Task[None]) -> None:
        """Fail when the pipeline task ends by itself (an error, or a cancel nobody asked for)."""
        task.add_done_callback(self._pipeline_ended)

    def _pipeline_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            if not self.stopping:
                self.fail("pipeline stopped: cancelled")
            return
        exc = task.exception()
        if exc is not None:
            log.error("pipeline failure", exc_info=exc)
            self.fail(f"pipeline stopped: {_one_line(exc)}")
        else:
            self.fail("pipeline stopped: returned")

    def _shutdown(self) -> None:
        self.shutdown_requested = True
        if self._request_shutdown is not None:
            self._request_shutdown()


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_one_line(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"
