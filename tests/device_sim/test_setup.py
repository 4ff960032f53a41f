"""setup_via_api creates the world through the HTTP API, parents first, and is idempotent."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from device_sim.setup import SetupError, setup_via_api
from device_sim.world import World

Handler = Callable[[httpx.Request], httpx.Response]
BODY_KEYS = {
    "/api/jurisdictions": {"id", "name", "kind", "parent_id"},
    "/api/subjects": {"id", "name", "jurisdiction_id", "risk_level", "groups"},
    "/api/devices": {"id", "kind", "subject_id"},
    "/api/zones": {"type", "id", "geometry", "properties"},
}


class FakeApi:
    """Records requests; answers like the real API would for a fresh or an already set-up database."""

    def __init__(self, post_status: int = 201, healthy_after: int = 0) -> None:
        self.posts: list[tuple[str, dict[str, object]]] = []
        self.post_status = post_status
        self.health_checks = 0
        self.healthy_after = healthy_after

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/healthz":
            self.health_checks += 1
            return httpx.Response(200 if self.health_checks > self.healthy_after else 503)
        body = json.loads(request.content)
        self.posts.append((request.url.path, body))
        return httpx.Response(self.post_status, json={})

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url="http://api.test", transport=httpx.MockTransport(self))


async def test_creates_everything_with_exactly_the_api_fields(world: World) -> None:
    api = FakeApi()
    async with api.client() as client:
        await setup_via_api("http://api.test", world, client=client)
    for path, body in api.posts:
        assert set(body) == BODY_KEYS[path], path
    by_path: dict[str, list[str]] = {}
    for path, body in api.posts:
        by_path.setdefault(path, []).append(str(body["id"]))
    assert len(by_path["/api/jurisdictions"]) == len(world.geography.jurisdictions)
    assert sorted(by_path["/api/subjects"]) == sorted(world.subjects.ids)
    assert sorted(by_path["/api/devices"]) == sorted(world.devices.ids)
    zone_ids = [z["id"] for z in [*world.geography.shared_zones, *world.own_zones]]
    assert sorted(by_path["/api/zones"]) == sorted(zone_ids)


async def test_parents_are_created_before_what_refers_to_them(world: World) -> None:
    api = FakeApi()
    async with api.client() as client:
        await setup_via_api("http://api.test", world, client=client)
    created: set[object] = {None}
    for path, body in api.posts:
        if path == "/api/jurisdictions":
            assert body["parent_id"] in created
        elif path == "/api/subjects":
            assert body["jurisdiction_id"] in created
        elif path == "/api/devices":
            assert body["subject_id"] in created
        elif path == "/api/zones":
            props = body["properties"]
            assert isinstance(props, dict)
            assert props.get("jurisdiction_id", props.get("subject_id")) in created | {None}
        created.add(body["id"])


async def test_conflict_means_already_set_up(world: World) -> None:
    api = FakeApi(post_status=409)
    async with api.client() as client:
        await setup_via_api("http://api.test", world, client=client)


async def test_any_other_refusal_stops_setup(world: World) -> None:
    api = FakeApi(post_status=422)
    async with api.client() as client:
        with pytest.raises(SetupError, match="422"):
            await setup_via_api("http://api.test", world, client=client)


async def test_waits_for_the_service_to_become_healthy(world: World) -> None:
    api = FakeApi(healthy_after=2)
    async with api.client() as client:
        await setup_via_api("http://api.test", world, client=client, wait_healthy_s=10)
    assert api.health_checks == 3 and api.posts


async def test_gives_up_when_the_service_never_becomes_healthy(world: World) -> None:
    api = FakeApi(healthy_after=10**9)
    async with api.client() as client:
        with pytest.raises(SetupError, match="healthz"):
            await setup_via_api("http://api.test", world, client=client, wait_healthy_s=0.2)
