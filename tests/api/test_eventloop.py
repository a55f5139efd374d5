"""`atom serve --loop`: which event loop a choice stands for, and running on it."""

from __future__ import annotations

import importlib.util

import pytest

from api.eventloop import LoopUnavailable, resolve, run, running_loop_name


async def _name() -> str:
    return running_loop_name()


@pytest.mark.parametrize(("choice", "name"), [("auto", "uvloop"), ("uvloop", "uvloop"),
                                              ("asyncio", "asyncio")])  # fmt: skip
def test_a_choice_runs_on_the_loop_it_stands_for(choice: str, name: str) -> None:
    loop = resolve(choice)
    assert loop == name
    assert run(_name(), loop) == name


def test_without_uvloop_auto_falls_back_and_asking_for_it_names_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "uvloop" else find_spec(name)
    )
    assert resolve("auto") == "asyncio"
    with pytest.raises(LoopUnavailable, match=r"uvloop is not installed \(pip install uvloop\)"):
        resolve("uvloop")


def test_an_unknown_choice_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"'trio'.*auto, uvloop, asyncio"):
        resolve("trio")
