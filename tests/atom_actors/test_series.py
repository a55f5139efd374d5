"""The time series projection and its presentation: buckets by minute, per tenancy, bounded."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from atom_actors import views
from atom_actors.series import DAY_BUCKETS, Series, five_of, minute_of, shift
from eventstore import RecordedEvent, canonical

START = datetime(2026, 11, 1, 14, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    return (
        (START + timedelta(seconds=seconds))
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


def completed(seconds: float, tenancy: str = "tenant:a", **data: Any) -> RecordedEvent:
    body = {"request_id": "r", "model": "m", "strategy": "cost_first", "latency_ms": 10.0,
            "prompt_tokens": 5, "completion_tokens": 7, "cost_pico": 1000, "fallbacks": 0,
            "baseline_pico": 3000, **data}  # fmt: skip
    return _event("RequestCompleted", body, seconds, tenancy)


def failed(seconds: float, tenancy: str = "tenant:a", **data: Any) -> RecordedEvent:
    body = {"request_id": "r", "kind": "upstream_error", "status": 502, "strategy": "cost_first",
            "latency_ms": 5.0, "cost_pico": 0, **data}  # fmt: skip
    return _event("RequestFailed", body, seconds, tenancy)


def call(seconds: float, tenancy: str = "tenant:a", **data: Any) -> RecordedEvent:
    body = {"model": "m", "call_id": "c", "latency_ms": 9.0, "ttft_ms": 2.0, "tokens_per_s": 70.0,
            "completion_tokens": 7, "cost_pico": 1000, **data}  # fmt: skip
    return _event("ModelCallCompleted", body, seconds, tenancy)


_positions = iter(range(1, 1 << 30))


def _event(kind: str, data: dict[str, Any], seconds: float, tenancy: str) -> RecordedEvent:
    position = next(_positions)
    return RecordedEvent(position, "request-r", 0, str(position), kind, 1, data,
                         {"tenancy": tenancy}, at(seconds), "")  # fmt: skip


def fold(events: list[RecordedEvent]) -> dict[str, Any]:
    projection = Series()
    state = projection.initial()
    for event in events:
        state = projection.apply(state, event)
    return state


def test_bucket_keys() -> None:
    assert minute_of("2026-11-01T14:05:59.999999Z") == "2026-11-01T14:05"
    assert five_of("2026-11-01T14:09") == "2026-11-01T14:05"
    assert five_of("2026-11-01T14:10") == "2026-11-01T14:10"
    assert shift("2026-11-01T00:00", -1) == "2026-10-31T23:59"


def test_requests_count_in_the_minute_they_ended_per_tenancy() -> None:
    state = fold([completed(1), failed(30), completed(61), completed(62, "tenant:b")])
    a = state["tenancies"]["tenant:a"]
    assert {k: (v["requests"], v["failed"]) for k, v in a["minutes"].items()} == {
        "2026-11-01T14:00": (2, 1),
        "2026-11-01T14:01": (1, 0),
    }
    assert a["five"]["2026-11-01T14:00"]["requests"] == 3
    assert a["strategies"]["cost_first"]["2026-11-01T14:00"]["fallbacks"] == 0
    assert state["tenancies"]["tenant:b"]["minutes"]["2026-11-01T14:01"]["requests"] == 1


def test_model_calls_and_cut_settlements_count_per_model() -> None:
    cut = _event("BudgetSettled", {"rule": "cut", "model": "m", "actual_pico": 500,
                                   "completion_tokens": 3}, 2, "tenant:a")  # fmt: skip
    usage = _event("BudgetSettled", {"rule": "usage", "model": "m", "actual_pico": 999}, 3,
                   "tenant:a")  # fmt: skip
    state = fold([call(1), call(2, kind="x"), cut, usage])
    row = state["tenancies"]["tenant:a"]["models"]["m"]["2026-11-01T14:00"]
    assert (row["calls"], row["cost_pico"], row["completion_tokens"]) == (2, 2500, 17)


def test_old_buckets_are_dropped_as_the_clock_moves_on() -> None:
    state = fold([completed(0), call(0), completed(3600), completed(3660)])
    a = state["tenancies"]["tenant:a"]
    # An hour of minute buckets: 14:00 fell out when 15:00 arrived.
    assert sorted(a["minutes"]) == ["2026-11-01T15:00", "2026-11-01T15:01"]
    assert a["models"] == {}
    # The day's 5-minute buckets keep it.
    assert sorted(a["five"]) == ["2026-11-01T14:00", "2026-11-01T15:00"]
    later = fold([completed(0), completed(86400 + 600)])
    assert sorted(later["tenancies"]["tenant:a"]["five"]) == ["2026-11-02T14:10"]


def test_an_event_recorded_before_the_kept_hour_is_not_counted() -> None:
    state = fold([completed(4000), completed(10)])
    assert sum(r["requests"] for r in state["tenancies"]["tenant:a"]["minutes"].values()) == 1


# Any sequence of requests, calls and failures over two hours, in time order.
moments = st.lists(
    st.tuples(st.sampled_from(["completed", "failed", "call"]), st.integers(0, 7200),
              st.sampled_from(["tenant:a", "tenant:b", "key:k"])),
    max_size=60,
).map(lambda xs: sorted(xs, key=lambda x: x[1]))  # fmt: skip
MAKE = {"completed": completed, "failed": failed, "call": call}


@given(moments)
def test_the_fold_is_deterministic_and_every_kept_request_is_counted_once(
    moments: list[tuple[str, int, str]],
) -> None:
    events = [MAKE[kind](seconds, tenancy) for kind, seconds, tenancy in moments]
    state = fold(events)
    assert canonical(fold(copy.deepcopy(events))) == canonical(state)
    if not events:
        return
    clock = state["clock"]
    kept_from = shift(clock, -59)
    ended = [e for e in events if e.type != "ModelCallCompleted"]
    expected = sum(1 for e in ended if minute_of(e.recorded_at) >= kept_from)
    counted = sum(
        row["requests"]
        for tenancy in state["tenancies"].values()
        for row in tenancy["minutes"].values()
    )
    assert counted == expected
    # Within a day, every request is in a 5-minute bucket.
    assert sum(
        row["requests"] for t in state["tenancies"].values() for row in t["five"].values()
    ) == len(ended)


def test_the_hour_is_sixty_columns_a_tenant_sees_its_own() -> None:
    state = fold([completed(5), failed(10), completed(70, "tenant:b"), call(20)])
    now = START + timedelta(seconds=90)
    mine = views.series(state, "tenant:a", window="hour", now=now)
    assert mine["step_s"] == 60 and len(mine["t"]) == 60
    assert mine["t"][-1] == int((START + timedelta(minutes=1)).timestamp())
    overall = mine["overall"]
    assert overall["requests"][-2:] == [2, 0]
    assert overall["error_rate"][-2] == 0.5
    assert overall["requests_per_s"][-2] == round(2 / 60, 3)
    assert overall["p50_ms"][-1] is None
    assert mine["summary"]["requests"] == 2
    assert mine["models"]["m"]["calls"][-2] == 1
    assert mine["strategies"]["cost_first"]["savings_usd"][-2] == 2e-9
    everyone = views.series(state, None, window="hour", now=now)
    # The current minute's rate is over the 30 s it has lasted.
    assert everyone["overall"]["requests_per_s"][-1] == round(1 / 30, 3)
    assert everyone["summary"]["requests"] == 3
    assert views.series(state, "tenant:none", window="hour", now=now)["summary"]["requests"] == 0


def test_the_day_is_five_minute_columns_without_models() -> None:
    state = fold([completed(5), completed(400)])
    day = views.series(state, None, window="day", now=START + timedelta(seconds=400))
    assert (day["step_s"], len(day["t"])) == (300, DAY_BUCKETS)
    assert day["overall"]["requests"][-2:] == [1, 1]
    assert day["models"] == {} and day["strategies"] == {}
