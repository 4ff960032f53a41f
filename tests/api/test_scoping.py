"""Every route shows each role exactly its jurisdiction subtree or caseload: a table of role × route × expected."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import websockets

from tests.api.conftest import World
from tests.e2e.conftest import FeedClient

ALL = {"s1", "s2", "s3"}
SEES = {  # the subjects each user may see
    "admin": ALL,
    "sup1": {"s1", "s2"},  # district d1: offices o1 and o2
    "op1": {"s1"},  # command center of office o1
    "off1": {"s1"},  # officer of office o1, empty caseload
    "off3": {"s2", "s3"},  # officer of office o3 with s2 (office o2) on the caseload
}
ZONES = {  # beyond the subjects' own zones: shared zones of their jurisdictions and above
    "admin": {"city-zone", "d2-zone"},
    "sup1": {"city-zone"},
    "op1": {"city-zone"},
    "off1": {"city-zone"},
    "off3": {"city-zone", "d2-zone"},
}
JURISDICTIONS = {  # their subtree, plus the ancestors their subjects' zones come from
    "admin": {"c", "d1", "d2", "o1", "o2", "o3"},
    "sup1": {"c", "d1", "o1", "o2"},
    "op1": {"c", "d1", "o1"},
    "off1": {"c", "d1", "o1"},
    "off3": {"c", "d1", "d2", "o2", "o3"},
}
USERS = list(SEES)
PROTECTED = [("GET", "/api/subjects"), ("GET", "/api/devices"), ("GET", "/api/zones"), ("GET", "/api/alerts"),
             ("GET", "/api/jurisdictions"), ("GET", "/api/positions/latest"), ("GET", "/api/audit"),
             ("GET", "/api/users"), ("GET", "/api/auth/me"), ("POST", "/api/alerts/1/ack"),
             ("GET", "/api/alerts/1/evidence"), ("GET", "/api/subjects/x/track"), ("POST", "/api/subjects"),
             ("POST", "/api/zones"), ("POST", "/api/devices"), ("POST", "/api/jurisdictions"),
             ("POST", "/api/users"), ("POST", "/api/alerts/bulk")]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_every_route_needs_a_token(world: World, method: str, path: str) -> None:
    async with httpx.AsyncClient(base_url=world.service.base_url) as anonymous:
        r = await anonymous.request(method, path, json={} if method == "POST" else None)
        assert r.status_code == 401, r.text
        r = await anonymous.request(method, path, headers={"Authorization": "Bearer not-a-token"})
        assert r.status_code == 401, r.text


def _subjects_in(route: str, body: Any, w: World) -> set[str]:
    if route == "/api/zones":
        known = {"city-zone", "d2-zone"} | {f"{s}-home" for s in ALL}  # other tests add subjects of their own
        return {f["id"].removeprefix(f"{w.tag}-") for f in body["features"]} & known
    if route == "/api/jurisdictions":
        return {j["id"].removeprefix(f"{w.tag}-") for j in body if j["id"].startswith(w.tag)}
    key = {"/api/subjects": "id", "/api/devices": "subject_id"}.get(route, "subject_id")
    return w.short(row[key] for row in body)


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("route", ["/api/subjects", "/api/devices", "/api/alerts", "/api/positions/latest",
                                   "/api/zones", "/api/jurisdictions"])
async def test_lists_hold_exactly_the_users_scope(world: World, user: str, route: str) -> None:
    r = await world.client(user).get(route)
    assert r.status_code == 200, r.text
    expected = {
        "/api/zones": {f"{s}-home" for s in SEES[user]} | ZONES[user],
        "/api/jurisdictions": JURISDICTIONS[user],
    }.get(route, SEES[user])
    assert _subjects_in(route, r.json(), world) == expected


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("subject", sorted(ALL))
async def test_single_reads_outside_scope_are_not_found(world: World, user: str, subject: str) -> None:
    http, sid = world.client(user), world.subjects[subject]
    expected = 200 if subject in SEES[user] else 404
    paths = [f"/api/subjects/{sid}", f"/api/subjects/{sid}/track", f"/api/devices/{world.devices[subject]}",
             f"/api/zones/{sid}-home", f"/api/alerts/{world.alerts[subject]}/evidence",
             f"/api/subjects/{sid}/officers"]
    for path in paths:
        assert (await http.get(path)).status_code == expected, path


@pytest.mark.parametrize("user", USERS)
async def test_filters_never_widen_the_scope(world: World, user: str) -> None:
    http = world.client(user)
    for subject in sorted(ALL):
        alerts = (await http.get("/api/alerts", params={"subject_id": world.subjects[subject]})).json()
        assert world.short(a["subject_id"] for a in alerts) == {subject} & SEES[user]
    for office, inside in (("o1", {"s1"}), ("o2", {"s2"}), ("o3", {"s3"})):
        alerts = (await http.get("/api/alerts", params={"jurisdiction_id": world.j(office)})).json()
        assert world.short(a["subject_id"] for a in alerts) == inside & SEES[user]
        subjects = (await http.get("/api/subjects", params={"jurisdiction_id": world.j(office)})).json()
        assert world.short(s["id"] for s in subjects) == inside & SEES[user]
    alerts = (await http.get("/api/alerts", params={"since": 0, "status": "open"})).json()
    assert world.short(a["subject_id"] for a in alerts) == SEES[user]


@pytest.mark.parametrize(("user", "office", "expected"), [
    ("admin", "o2", 201), ("sup1", "o2", 201), ("sup1", "o3", 403), ("op1", "o1", 201), ("op1", "o2", 403),
    ("off1", "o1", 403), ("off3", "o3", 403),
])
async def test_who_may_register_a_subject_where(world: World, user: str, office: str, expected: int) -> None:
    body = {"id": f"{world.tag}-new-{user}-{office}", "name": "n", "jurisdiction_id": world.j(office)}
    assert (await world.client(user).post("/api/subjects", json=body)).status_code == expected


@pytest.mark.parametrize(("user", "audit", "users", "create_user"), [
    ("admin", 200, 200, 422), ("sup1", 200, 200, 403), ("op1", 403, 403, 403), ("off1", 403, 403, 403),
    ("off3", 403, 403, 403),
])
async def test_admin_routes_by_role(world: World, user: str, audit: int, users: int, create_user: int) -> None:
    http = world.client(user)
    assert (await http.get("/api/audit")).status_code == audit
    assert (await http.get("/api/users")).status_code == users
    # 422: the admin passes the role check and then fails validation (no password), creating nothing.
    assert (await http.post("/api/users", json={"username": "x", "role": "admin"})).status_code == create_user


async def test_acknowledging_outside_scope_is_not_found_and_changes_nothing(world: World) -> None:
    alert_id = world.alerts["s2"]
    r = await world.client("op1").post(f"/api/alerts/{alert_id}/ack")
    assert r.status_code == 404
    r = await world.client("off1").post("/api/alerts/bulk", json={"ids": [alert_id], "action": "acknowledge"})
    assert r.json() == [{"id": alert_id, "result": "not_found"}]
    (alert,) = [a for a in (await world.service.http.get("/api/alerts")).json() if a["id"] == alert_id]
    assert alert["acknowledged_by"] is None


async def _replay(world: World, token: str) -> tuple[set[str], str | None]:
    url = world.service.ws_url + "?since=0"
    protocols = [websockets.Subprotocol("bearer"), websockets.Subprotocol(token)]
    seen: set[str] = set()
    async with websockets.connect(url, subprotocols=protocols) as ws:
        client = FeedClient(ws, None)
        try:
            while True:
                seen.add((await client.next(timeout=0.7))["subject_id"])
        except TimeoutError:
            pass
        return world.short(seen), ws.subprotocol


@pytest.mark.parametrize("user", USERS)
async def test_feed_replay_holds_exactly_the_users_scope(world: World, user: str) -> None:
    subjects, protocol = await _replay(world, world.tokens[user])
    assert protocol == "bearer"  # echoed, as browsers require
    assert subjects == SEES[user]


@pytest.mark.parametrize("token", [None, "garbage"])
async def test_feed_without_a_valid_token_is_closed_unauthorized(world: World, token: str | None) -> None:
    protocols = [websockets.Subprotocol("bearer"), websockets.Subprotocol(token)] if token else None
    async with websockets.connect(world.service.ws_url + "?since=0", subprotocols=protocols) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
