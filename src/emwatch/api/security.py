"""Security headers on every response, and `install()` which adds them and the rate limits to the app."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emwatch.api.ratelimit import ApiRateLimit, Clock, LoginThrottle
from emwatch.settings import Settings


def content_security_policy(tile_url: str | None) -> str:
    """Only our own origin (the page and its vendored Leaflet under /static), plus the tile server's
    images when a tile URL is configured."""
    images = ["'self'", "data:", "blob:"]  # Leaflet draws markers and controls from data: URIs
    if tile_url:
        parts = urlsplit(tile_url.replace("{s}", "*"))  # {s}.tile.example: any subdomain
        if parts.scheme and parts.netloc:
            images.append(f"{parts.scheme}://{parts.netloc}")
    return "; ".join([
        "default-src 'self'", "script-src 'self'", "style-src 'self'", f"img-src {' '.join(images)}",
        "connect-src 'self'", "object-src 'none'", "base-uri 'none'", "form-action 'self'",
        "frame-ancestors 'none'",
    ])


class SecurityHeaders:
    """ASGI middleware: CSP, nosniff, no referrer, no framing; API JSON is never cached."""

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.headers = {
            "Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
                # Responses carry confidential positions: no browser or proxy may keep a copy.
                if headers.get("content-type", "").startswith("application/json"):
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI, settings: Settings, clock: Clock) -> None:
    """Add the API rate limit, the security headers (outermost, so 429s carry them too) and the
    login throttle (as `app.state.login_throttle`)."""
    app.state.login_throttle = LoginThrottle(settings, clock)
    app.add_middleware(ApiRateLimit, rate_per_s=settings.api_rate_per_s, burst=settings.api_burst,
                       clock=clock)
    app.add_middleware(SecurityHeaders, csp=content_security_policy(settings.map_tile_url))
