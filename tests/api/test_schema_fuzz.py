"""schemathesis against the running service's own OpenAPI schema, logged in as admin: no request,
however odd, gets a 5xx, and every response matches the schema.

A service of its own on a fresh database, since generated requests create and change things. CI runs a
few examples per operation; `EMWATCH_FUZZ_EXAMPLES=500` runs a deeper search.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.e2e.conftest import Service, running_service

EXAMPLES = int(os.environ.get("EMWATCH_FUZZ_EXAMPLES", "8"))
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture(scope="module")
async def fuzzed(database_factory: Any, mqtt_url: str) -> AsyncIterator[Service]:
    async with running_service(await database_factory(), mqtt_url) as (service, _):
        yield service


def fuzz(base_url: str, token: str) -> list[str]:
    """Run every operation of the schema; returns one line per operation that failed a check."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=10)

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # collect all: one report names every failing one
            failures.append(f"{operation.label}: {' '.join(str(exc).split())[:900]}")
    return failures


async def test_no_generated_request_gets_a_server_error_or_an_off_schema_response(fuzzed: Service) -> None:
    # schemathesis speaks blocking HTTP; the service runs on this event loop, so the client gets a thread.
    failures = await asyncio.to_thread(fuzz, fuzzed.base_url, fuzzed.token)
    assert failures == [], "\n".join(failures)
