"""What route handlers get from the running service (the seam where auth will plug in)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
from fastapi import Request

from emwatch.api.tokens import TokenIssuer
from emwatch.api.totp_seal import TotpSealer
from emwatch.feed.hub import AlertFeed
from emwatch.pipeline import Pipeline
from emwatch.settings import Settings


@dataclass(slots=True)
class Services:
    """The live parts of a running service."""

    settings: Settings
    pool: asyncpg.Pool
    feed: AlertFeed
    pipeline: Pipeline
    tokens: TokenIssuer
    clock: Callable[[], float]  # epoch seconds; tests move it to expire tokens and escalate alerts
    totp: TotpSealer


def services(request: Request) -> Services:
    """The running service's parts (a FastAPI dependency)."""
    svc: Services = request.app.state.services
    return svc
