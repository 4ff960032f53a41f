"""The command-center page at `/`, its vendored static assets, and its runtime configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from emwatch import __version__
from emwatch.api.auth import Svc

STATIC = Path(__file__).parent / "static"
router = APIRouter()


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


@router.get("/sw.js", include_in_schema=False)
async def service_worker() -> FileResponse:
    """The push service worker, from the root: a worker's scope can be no wider than its own path
    unless Service-Worker-Allowed says so (sent anyway, for a deployment that moves it)."""
    return FileResponse(STATIC / "sw.js", media_type="text/javascript", headers={
        "Service-Worker-Allowed": "/", "Cache-Control": "no-cache",  # a new version installs at once
    })


@router.get("/api/config")
async def page_config(svc: Svc) -> dict[str, Any]:
    """What the page needs before login: the map tile URL (None: draw on a plain background)."""
    return {"tile_url": svc.settings.map_tile_url, "version": __version__}


def static_files() -> StaticFiles:
    """The page's JS/CSS and the vendored Leaflet, served under /static."""
    return StaticFiles(directory=STATIC)
