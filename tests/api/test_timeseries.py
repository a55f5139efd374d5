"""GET /timeseries: the series projection as columns, scoped by tenancy."""

from __future__ import annotations

import asyncio

from api.auth import Role
from tests.api.conftest import Fleet, issue_key

SERIES = "/api/advanced-ai/timeseries"


async def test_the_last_minute_counts_a_tenant_s_own_requests(fleet: Fleet) -> None:
    a = issue_key(fleet.store, Role.USER, tenant="a")
    async with asyncio.timeout(5):
        while fleet.api.services.keys.find(a) is None:
            await asyncio.sleep(0.02)
    # The tenant asks last: its consistent read then includes the other's request too.
    for key in (fleet.key, a, a):
        status, _ = await fleet.post("/api/advanced-ai/process", {"model": "cheap",
                                                                  "prompt": "hi"}, key)  # fmt: skip
        assert status == 200
    status, mine = await fleet.get(f"{SERIES}?consistent=true", a)
    assert status == 200
    assert (mine["window"], mine["step_s"], len(mine["t"])) == ("hour", 60, 60)
    # Requests ended in this minute or, at a minute's turn, the one before.
    assert sum(mine["overall"]["requests"][-2:]) == 2 == mine["summary"]["requests"]
    assert sum(mine["models"]["cheap"]["calls"][-2:]) == 2
    assert mine["position"] >= 1
    status, everyone = await fleet.get(f"{SERIES}?consistent=true", fleet.api.keys[Role.ADMIN])
    assert everyone["summary"]["requests"] == 3
    status, day = await fleet.get(f"{SERIES}?window=day", a)
    assert (day["step_s"], len(day["t"]), day["summary"]["requests"]) == (300, 288, 2)
    status, error = await fleet.get(f"{SERIES}?window=week", a)
    assert (status, error["error"]["field"]) == (400, "window")
