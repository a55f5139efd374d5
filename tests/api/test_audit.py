"""GET /log and POST /log/verify: the chain's tip, and verifications put on the record."""

from __future__ import annotations

from api.auth import Role
from eventstore import verify_rows
from tests.api.conftest import Api

LOG = "/api/advanced-ai/log"


async def test_a_verification_is_recorded_and_shown_as_the_last(api: Api) -> None:
    viewer, operator = api.keys[Role.VIEWER], api.keys[Role.OPERATOR]
    status, before, _ = await api.call("GET", LOG, key=viewer)
    store = api.services.store
    report = verify_rows(store.iter_raw())
    assert status == 200
    assert (before["head"], before["chain_tip"]) == (report.head, report.head_hash)
    assert before["last_verification"] is None and before["verifying"] is False
    status, error, _ = await api.call("POST", f"{LOG}/verify", key=viewer)
    assert (status, error["error"]["type"]) == (403, "forbidden")
    status, verified, _ = await api.call("POST", f"{LOG}/verify", key=operator)
    assert status == 200
    assert verified["ok"] is True
    assert (verified["head"], verified["head_hash"]) == (report.head, report.head_hash)
    assert verified["by"] == api.services.keys.find(operator).key_id  # type: ignore[union-attr]
    status, after, _ = await api.call("GET", LOG, key=viewer)
    # The verification is itself on the record: the head moved past what it verified.
    assert after["head"] == verified["position"] == report.head + 1
    assert after["last_verification"]["position"] == verified["position"]
    assert after["last_verification"]["ok"] is True
    [event] = store.read_stream("log-verifications")
    assert event.type == "LogVerified" and event.data["events"] == report.events
