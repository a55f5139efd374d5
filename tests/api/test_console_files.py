"""GET / and /console/*: the page's files, from memory by name, under a strict policy."""

from __future__ import annotations

import hashlib

import pytest

from api.routes.console import ROOT
from tests.api.conftest import Api

# uplot@1.6.32 from the npm registry, as vendor/README.md says: changed only by an update.
VENDORED = {
    "uPlot.esm.js": "5dd9b3281aa64b461b42d9945f6adb2649d346502b12281a9ae0d46599a80eba",
    "uPlot.min.css": "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04",
    "uPlot.LICENSE": "8f989229699b4fe2f1a0432d0e9edc338a8a911e250e2d1b01ecd770a5f5b1bd",
}


def test_the_vendored_library_is_the_release_named_with_its_licence() -> None:
    for name, digest in VENDORED.items():
        assert hashlib.sha256((ROOT / "vendor" / name).read_bytes()).hexdigest() == digest
    assert "MIT License" in (ROOT / "vendor" / "uPlot.LICENSE").read_text()
    assert "uplot@1.6.32" in (ROOT / "vendor" / "README.md").read_text()


async def test_the_page_needs_no_key_and_loads_nothing_from_elsewhere(api: Api) -> None:
    status, html, response = await api.call("GET", "/")
    assert status == 200 and response.content_type == "text/html"
    assert '<script type="module" src="/console/app.js">' in html
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "http" not in policy
    # Every script and style the page names is served here.
    for path in ("/console/app.js", "/console/console.css", "/console/vendor/uPlot.esm.js"):
        status, _, response = await api.call("GET", path)
        assert status == 200, path
    status, _, response = await api.call("GET", "/console/app.js")
    assert response.content_type == "text/javascript"
    etag = response.headers["ETag"]
    status, _, _ = await api.call("GET", "/console/app.js", headers={"If-None-Match": etag})
    assert status == 304


@pytest.mark.parametrize(
    "path", ["/console/nothing.js", "/console/..%2Fserver.py", "/console/vendor/..%2F..%2Fapp.py"]
)
async def test_only_the_console_s_own_files_are_served(api: Api, path: str) -> None:
    status, error, _ = await api.call("GET", path)
    assert status == 404
    assert error["error"]["type"] == "not_found"
