"""The operator console: a page of plain HTML, CSS and JavaScript modules, served as it is.

The files are read from `api/console/` once, when the routes are first served, and answered
from memory by name; no path is ever joined from a request, so nothing outside that folder
can be reached. The page holds no data: everything it shows it reads from the API with the
viewer's session token, so these routes need no key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

from aiohttp import web

from ..errors import NotFound
from ..routing import Route

ROOT: Final = Path(__file__).resolve().parent.parent / "console"
TYPES: Final = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".md": "text/markdown",
    ".LICENSE": "text/plain",
}
# Everything the page loads comes from this server: no CDN, no inline script.
POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


@cache
def assets(folder: str) -> dict[str, Asset]:
    """The files of a folder of the console, by name."""
    found = {}
    for path in sorted((ROOT / folder).iterdir()):
        content_type = TYPES.get(path.suffix)
        if path.is_file() and content_type is not None:
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            found[path.name] = Asset(body, content_type, etag)
    return found


def _answer(request: web.Request, asset: Asset) -> web.Response:
    headers = {
        # Revalidated every time, so a new release is never mixed with an old page.
        "Cache-Control": "no-cache",
        "ETag": asset.etag,
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": POLICY,
        "Referrer-Policy": "no-referrer",
    }
    if request.headers.get("If-None-Match") == asset.etag:
        return web.Response(status=304, headers=headers)
    charset = "utf-8" if asset.content_type.startswith("text/") else None
    return web.Response(
        body=asset.body, content_type=asset.content_type, charset=charset, headers=headers
    )


async def page(request: web.Request) -> web.Response:
    return _answer(request, assets("")["index.html"])


async def console_file(request: web.Request) -> web.Response:
    return _file(request, "")


async def vendor_file(request: web.Request) -> web.Response:
    return _file(request, "vendor")


def _file(request: web.Request, folder: str) -> web.Response:
    name = request.match_info["file"]
    asset = assets(folder).get(name)
    if asset is None:
        raise NotFound("the console has no such file")
    return _answer(request, asset)


FILE: Final = {"type": "string", "description": "the file's content"}

ROUTES: Final = (
    Route("GET", "/", page, role=None, summary="The operator console",
          description="Sign in with an API key; the page keeps only a short-lived session "
          "token (sessionStorage) and reads everything else from this API.",
          response=FILE, content_type="text/html", tag="console"),
    Route("GET", "/console/{file}", console_file, role=None,
          summary="The console's scripts and style sheet", response=FILE,
          content_type="*/*", errors=(404,), tag="console"),
    Route("GET", "/console/vendor/{file}", vendor_file, role=None,
          summary="The charting library the console uses (uPlot), with its licence",
          response=FILE, content_type="*/*", errors=(404,), tag="console"),
)  # fmt: skip
