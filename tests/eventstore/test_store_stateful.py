"""The store against a plain in-memory model of it, driven by hypothesis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from eventstore import (
    ANY,
    NO_STREAM,
    DuplicateEventConflict,
    NewEvent,
    WrongExpectedVersion,
    open_store,
    verify_rows,
)

streams = st.sampled_from(["a", "b", "c"])
payloads = st.dictionaries(
    st.text(min_size=1, max_size=3),
    st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5) | st.none(),
    max_size=3,
)


class StoreMachine(RuleBasedStateMachine):
    """One backend's store, on a new log for every example."""

    new_location: Callable[[], str]

    def __init__(self) -> None:
        super().__init__()
        self.store = open_store(self.new_location())
        # The model: the log as a list, and the batches appended so far with their positions.
        self.log: list[tuple[str, int, NewEvent]] = []
        self.batches: list[tuple[str, list[NewEvent], list[int]]] = []

    def version(self, stream: str) -> int:
        return max((v for s, v, _ in self.log if s == stream), default=NO_STREAM)

    @rule(
        stream=streams,
        data=st.lists(payloads, min_size=1, max_size=4),
        how=st.sampled_from(["right", "any", "no_stream", "wrong"]),
    )
    def append(self, stream: str, data: list[dict[str, Any]], how: str) -> None:
        events = [NewEvent("Happened", d) for d in data]
        current = self.version(stream)
        expected: Any = {
            "right": current,
            "any": ANY,
            "no_stream": NO_STREAM,
            "wrong": current + 1,
        }[how]
        should_work = how in ("right", "any") or (how == "no_stream" and current == NO_STREAM)
        try:
            positions = self.store.append(stream, events, expected)
        except WrongExpectedVersion as exc:
            assert not should_work
            assert exc.actual == current
            return
        assert should_work
        assert positions == list(range(len(self.log) + 1, len(self.log) + len(events) + 1))
        for i, e in enumerate(events):
            self.log.append((stream, current + 1 + i, e))
        self.batches.append((stream, events, positions))

    @precondition(lambda self: self.batches)
    @rule(pick=st.integers(min_value=0))
    def retry_is_idempotent(self, pick: int) -> None:
        stream, events, positions = self.batches[pick % len(self.batches)]
        assert self.store.append(stream, events, NO_STREAM) == positions

    @precondition(lambda self: self.batches)
    @rule(pick=st.integers(min_value=0))
    def reuse_with_other_content_conflicts(self, pick: int) -> None:
        stream, events, _ = self.batches[pick % len(self.batches)]
        forged = NewEvent("Forged", {"x": 1}, event_id=events[0].event_id)
        try:
            self.store.append(stream, [forged])
        except DuplicateEventConflict:
            return
        raise AssertionError("a reused event_id with other content was accepted")

    @invariant()
    def log_matches_model(self) -> None:
        stored = list(self.store.read_all())
        assert [(e.stream_id, e.stream_version, e.event_id, e.data) for e in stored] == [
            (s, v, e.event_id, dict(e.data)) for s, v, e in self.log
        ]
        assert self.store.head() == len(self.log)
        for stream in ("a", "b", "c"):
            assert self.store.stream_version(stream) == self.version(stream)

    @invariant()
    def chain_verifies(self) -> None:
        assert verify_rows(self.store.iter_raw()).ok

    def teardown(self) -> None:
        self.store.close()


def test_the_store_behaves_as_its_model(new_location: Callable[[], str]) -> None:
    machine = type("Machine", (StoreMachine,), {"new_location": staticmethod(new_location)})
    run_state_machine_as_test(
        machine, settings=settings(max_examples=25, stateful_step_count=15, deadline=None)
    )
