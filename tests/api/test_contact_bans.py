"""No-contact orders over HTTP: stored once per unordered pair, admin only, and read by the pipeline."""

from __future__ import annotations

from tests.api.conftest import World


async def test_an_admin_creates_lists_and_lifts_a_ban_stored_once_per_pair(world: World) -> None:
    admin, s1, s3 = world.service.http, world.subjects["s1"], world.subjects["s3"]
    r = await admin.post("/api/contact-bans", json={"subject_a": s3, "subject_b": s1, "radius_m": 150.0})
    assert r.status_code == 201, r.text
    assert (r.json()["subject_a"], r.json()["subject_b"]) == tuple(sorted((s1, s3)))
    again = await admin.post("/api/contact-bans", json={"subject_a": s1, "subject_b": s3})
    assert again.status_code == 409, again.text
    listed = await admin.get("/api/contact-bans", params={"subject_id": s3})
    assert [(b["subject_a"], b["subject_b"], b["radius_m"]) for b in listed.json()] == [(*sorted((s1, s3)), 150.0)]
    await _until_loaded(world, s1, s3, present=True)
    gone = await admin.delete(f"/api/contact-bans/{s1}/{s3}")
    assert gone.status_code == 204, gone.text
    assert (await admin.delete(f"/api/contact-bans/{s3}/{s1}")).status_code == 404
    await _until_loaded(world, s1, s3, present=False)


async def _until_loaded(world: World, a: str, b: str, *, present: bool) -> None:
    """Drain until the pipeline's registry has (or no longer has) the ban: it reloads on NOTIFY."""
    for _ in range(100):
        await world.service.drain()
        engine = world.service.pipeline.engine
        assert engine is not None
        r = engine.registry
        pairs = {(r.subject_ids[i], r.subject_ids[j]) for i, j in zip(r.ban_a.tolist(), r.ban_b.tolist(), strict=True)}
        if ((a, b) in pairs or (b, a) in pairs) == present:
            return
    raise TimeoutError(f"the pipeline never {'loaded' if present else 'dropped'} the ban {a} / {b}")


async def test_bad_bans_are_refused_with_a_reason(world: World) -> None:
    admin, s1 = world.service.http, world.subjects["s1"]
    same = await admin.post("/api/contact-bans", json={"subject_a": s1, "subject_b": s1})
    assert same.status_code == 422 and "itself" in same.text
    unknown = await admin.post("/api/contact-bans", json={"subject_a": s1, "subject_b": "nobody-here"})
    assert unknown.status_code == 422 and "unknown reference" in unknown.text
    far = await admin.post("/api/contact-bans", json={"subject_a": s1, "subject_b": world.subjects["s2"],
                                                      "radius_m": 1e6})
    assert far.status_code == 422


async def test_only_admins_manage_bans(world: World) -> None:
    body = {"subject_a": world.subjects["s1"], "subject_b": world.subjects["s2"]}
    for user in ("sup1", "op1", "off1"):
        r = await world.client(user).post("/api/contact-bans", json=body)
        assert r.status_code == 403, (user, r.text)
        assert (await world.client(user).get("/api/contact-bans")).status_code == 403
