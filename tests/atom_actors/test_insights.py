from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from atom_actors.insights import combine, parse


def reply(*insights: tuple[str, float]) -> str:
    return orjson.dumps(
        {
            "insights": [
                {"insight": text, "evidence": "e", "confidence": c, "recommendation": "r"}
                for text, c in insights
            ]
        }
    ).decode()


def test_the_same_insight_from_several_members_is_one_with_their_agreement() -> None:
    combined = combine(
        {
            "a": reply(("Sales fell in the third quarter", 0.9), ("Costs rose", 0.5)),
            "b": reply(("Sales fell sharply in the third quarter", 0.7)),
            "c": reply(("Churn is rising among new customers", 0.6)),
        }
    )
    first = combined[0]
    assert first["insight"].startswith("Sales fell") and first["members"] == ["a", "b"]
    assert first["agreement"] == round(2 / 3, 4) and first["confidence"] == 0.8
    assert sorted(i["agreement"] for i in combined[1:]) == [round(1 / 3, 4)] * 2


def test_replies_that_are_not_the_json_asked_for_do_not_vote() -> None:
    combined = combine({"a": reply(("One", 0.5)), "b": "Sorry, I cannot.", "c": "[1, 2]"})
    assert [(i["insight"], i["agreement"]) for i in combined] == [("One", 1.0)]
    assert parse('{"insights": [{"insight": "x", "confidence": "high"}]}')[0]["confidence"] == 0.5


@given(st.permutations(["a", "b", "c"]))
def test_the_order_of_members_does_not_change_agreement(order: list[str]) -> None:
    replies = {"a": reply(("Prices rise", 0.5)), "b": reply(("Prices rise", 0.7)),
               "c": reply(("Demand drops", 0.4))}  # fmt: skip
    combined = combine({m: replies[m] for m in order})
    assert {(i["insight"], i["agreement"]) for i in combined} == {
        ("Prices rise", round(2 / 3, 4)), ("Demand drops", round(1 / 3, 4)),
    }  # fmt: skip
