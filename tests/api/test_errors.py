"""Every failure answers the JSON error shape with its status, even ones nobody planned for."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from aiohttp import web

from api import errors
from api.auth import Role
from api.errors import (
    ApiError,
    BadRequest,
    GatewayTimeout,
    NotFound,
    PaymentRequired,
    RateLimited,
    Shape,
    Unavailable,
    UpstreamFailed,
)
from api.routing import PRINCIPAL, Handler, Route, json_response
from eventstore import EventStoreError, StoreClosed
from tests.api.conftest import Api, StartApi

FAILURES: dict[str, tuple[Callable[[], BaseException], int, dict[str, object]]] = {
    "bad": (lambda: BadRequest("x: nope", field="x"), 400,
            {"type": "bad_request", "message": "x: nope", "field": "x"}),
    "budget": (lambda: PaymentRequired("over budget"), 402,
               {"type": "budget_exceeded", "message": "over budget"}),
    "missing": (lambda: NotFound("no such model"), 404,
                {"type": "not_found", "message": "no such model"}),
    "limited": (lambda: RateLimited("slow down", retry_after=0.2), 429,
                {"type": "rate_limited", "message": "slow down", "retry_after": 1}),
    "upstream": (lambda: UpstreamFailed("all failed", tried=["a", "b"]), 502,
                 {"type": "upstream_failed", "message": "all failed", "tried": ["a", "b"]}),
    "down": (lambda: Unavailable("no model"), 503, {"type": "unavailable", "message": "no model"}),
    "late": (lambda: GatewayTimeout("deadline"), 504, {"type": "timeout", "message": "deadline"}),
    "closed": (lambda: StoreClosed("closed"), 503, {"type": "unavailable",
               "message": "the event log is closed: the server is shutting down"}),
    "disk": (lambda: EventStoreError("disk full"), 503,
             {"type": "unavailable", "message": "the event log refused the write"}),
    "teapot": (lambda: web.HTTPConflict(text="taken"), 409,
               {"type": "bad_request", "message": "taken"}),
}  # fmt: skip


def _raiser(make: Callable[[], BaseException]) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        raise make()

    return handler


async def _whoami(request: web.Request) -> web.Response:
    return json_response({"key_id": request[PRINCIPAL].key_id})


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("a bug")


# The same failures on a route that answers in Anthropic's shape, with its type names.
ANTHROPIC_TYPES = {
    "bad": "invalid_request_error",
    "budget": "billing_error",
    "missing": "not_found_error",
    "limited": "rate_limit_error",
    "upstream": "api_error",
    "down": "overloaded_error",
    "late": "timeout_error",
    "closed": "overloaded_error",
    "disk": "overloaded_error",
    "teapot": "invalid_request_error",
}


@pytest.fixture
async def failing(start_api: StartApi) -> Api:
    """An app with extra routes, as another route module would add them."""
    routes = [
        Route("GET", f"/fail/{name}", _raiser(make), role=None, summary=name)
        for name, (make, _, _) in FAILURES.items()
    ]
    routes += [
        Route("GET", f"/anthropic/{name}", _raiser(make), role=None, summary=name,
              error_shape=Shape.ANTHROPIC)
        for name, (make, _, _) in FAILURES.items()
    ]  # fmt: skip
    routes += [
        Route("GET", "/boom", _boom, role=None, summary="a bug"),
        Route("GET", "/whoami", _whoami, role=Role.USER, summary="who is calling"),
    ]
    return await start_api(routes=routes)


@pytest.mark.parametrize("name", FAILURES)
async def test_errors_map_to_status_and_shape(failing: Api, name: str) -> None:
    _, status, error = FAILURES[name]
    got, body, response = await failing.call("GET", f"/fail/{name}")
    assert (got, body) == (status, {"error": error})
    assert response.content_type == "application/json"
    if status == 429:
        assert response.headers["Retry-After"] == "1"


@pytest.mark.parametrize("name", FAILURES)
async def test_an_anthropic_route_answers_the_same_errors_in_anthropics_shape(
    failing: Api, name: str
) -> None:
    _, status, error = FAILURES[name]
    got, body, _ = await failing.call("GET", f"/anthropic/{name}")
    anthropic = {**error, "type": ANTHROPIC_TYPES[name]}
    assert (got, body) == (status, {"type": "error", "error": anthropic})


async def test_an_unplanned_exception_is_logged_and_answered_as_json(
    failing: Api, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="atom.api"):
        status, body, _ = await failing.call("GET", "/boom")
    assert status == 500
    assert body["error"]["type"] == "internal"
    incident = body["error"]["message"].removeprefix("internal error (incident ").rstrip(")")
    assert any(incident in r.getMessage() and r.exc_info for r in caplog.records)


async def test_a_route_module_gets_auth_from_its_declaration(failing: Api) -> None:
    assert (await failing.call("GET", "/whoami"))[0] == 401
    assert (await failing.call("GET", "/whoami", key=failing.keys[Role.VIEWER]))[0] == 403
    key = failing.keys[Role.USER]
    status, body, _ = await failing.call("GET", "/whoami", key=key)
    assert status == 200 and len(body["key_id"]) == 16


def test_every_error_class_has_its_own_status_and_names() -> None:
    classes = ApiError.__subclasses__()
    assert {cls.status for cls in classes} == {400, 401, 402, 403, 404, 413, 429, 502, 503, 504}
    # Each class is in the tree of the module's docstring, with both of its names.
    tree = {line.split()[1]: line.split()[3:] for line in (errors.__doc__ or "").splitlines()
            if line.strip().startswith(("├──", "└──"))}  # fmt: skip
    assert tree == {cls.__name__: [cls.type, cls.anthropic_type] for cls in classes}
