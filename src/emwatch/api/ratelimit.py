"""Brute-force protection for login (lockouts per username and per address) and a per-address API
token bucket. Both live in memory: one service instance's view, reset on restart."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from emwatch.settings import Settings

Clock = Callable[[], float]  # seconds
Key = tuple[str, str]  # ("user", name) or ("ip", address)
_PRUNE_AT = 100_000  # entries; past it, forgotten ones are dropped so memory stays bounded


@dataclass(slots=True)
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class LoginThrottle:
    """Counts failed logins per username and per client address; past a limit, locks out exponentially."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.limits = {"user": settings.login_max_failures, "ip": settings.login_ip_max_failures}
        self.base, self.cap = settings.login_lockout_s, settings.login_lockout_max_s
        self.window = settings.login_failure_window_s
        self.clock = clock
        self._failures: dict[Key, _Failures] = {}

    @staticmethod
    def keys(username: str, address: str | None) -> list[Key]:
        """The counters one login attempt touches."""
        return [("user", username.lower()), *([("ip", address)] if address else [])]

    def retry_after(self, keys: Iterable[Key]) -> float:
        """Seconds until an attempt with these keys may be made (0: now)."""
        now = self.clock()
        return max([0.0, *(f.locked_until - now for k in keys if (f := self._current(k, now)) is not None)])

    def failed(self, keys: Iterable[Key]) -> float:
        """Count one failure; returns the lockout (seconds) it starts, 0 if none."""
        now, locked = self.clock(), 0.0
        for key in keys:
            f = self._current(key, now) or self._failures.setdefault(key, _Failures())
            f.count, f.last = f.count + 1, now
            over = f.count - self.limits[key[0]]
            if over >= 0:
                lockout = min(self.cap, self.base * 2.0 ** min(over, 64))
                f.locked_until = max(f.locked_until, now + lockout)
                locked = max(locked, f.locked_until - now)
        if len(self._failures) > _PRUNE_AT:
            self._prune(now)
        return locked

    def succeeded(self, username: str) -> None:
        """A correct login clears its username's failures (not its address's: one good account must
        not let an attacker reset the address counter)."""
        self._failures.pop(("user", username.lower()), None)

    def _current(self, key: Key, now: float) -> _Failures | None:
        f = self._failures.get(key)
        if f is not None and f.locked_until <= now and now - f.last > self.window:
            del self._failures[key]
            return None
        return f

    def _prune(self, now: float) -> None:
        for key in list(self._failures):
            self._current(key, now)


class ApiRateLimit:
    """ASGI middleware: a token bucket per client address over `/api`; an empty bucket answers 429."""

    def __init__(
        self, app: ASGIApp, rate_per_s: float, burst: int, clock: Clock, prefix: str = "/api"
    ) -> None:
        self.app, self.rate, self.burst, self.clock = app, rate_per_s, float(burst), clock
        self.prefix = prefix
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, at)

    def take(self, address: str) -> float:
        """Take one token for `address`; returns 0 when granted, else seconds until one is available."""
        now = self.clock()
        tokens, at = self._buckets.get(address, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[address] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[address] = (tokens - 1.0, now)
        if len(self._buckets) > _PRUNE_AT:  # full buckets carry no information
            self._buckets = {a: (t, s) for a, (t, s) in self._buckets.items()
                             if t + (now - s) * self.rate < self.burst}
        return 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.rate <= 0 or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        wait = self.take(client[0] if client else "")
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        body = orjson.dumps({"detail": "rate limit exceeded"})
        await send({"type": "http.response.start", "status": 429, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(max(1, math.ceil(wait))).encode()),
        ]})
        await send({"type": "http.response.body", "body": body})
