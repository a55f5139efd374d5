"""The console in a real browser: Debian's Chromium, headless, driven by Playwright, against
a real `atom serve` in front of a fake upstream.

One server and one browser serve the whole module (each test opens its own page); every page
fails its test if the browser reports an error or an uncaught exception. Screenshots go to
build/screenshots (created here; ATOM_SCREENSHOTS elsewhere).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.api.conftest import ATOM
from tests.fakes.faults import Behaviour
from tests.fakes.openai_server import FakeOpenAI
from tests.paths import ROOT

CHROMIUM = os.environ.get("ATOM_CHROMIUM", "/usr/bin/chromium")
# As the machine's notes say: without the background-networking flags Chromium keeps trying
# hosts that a closed network refuses.
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions",
]  # fmt: skip
SHOTS = Path(os.environ.get("ATOM_SCREENSHOTS", ROOT / "build" / "screenshots"))
FAST_REPLY = "The weather in Paris is mild today, with a light breeze."
SLOW_REPLY = "One two three four five six seven eight nine ten eleven twelve thirteen."
KEY_ENV = "ATOM_CONSOLE_TEST_UPSTREAM_KEY"


class Upstream:
    """A fake OpenAI upstream on its own thread and loop: `fast` answers at once, `slow`
    streams about 25 tokens a second."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.fake = FakeOpenAI(
            models={
                "fast": Behaviour(reply=FAST_REPLY),
                "slow": Behaviour(reply=SLOW_REPLY, tokens_per_second=25),
            },
            record=False,
        )
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Upstream:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.start(), self.loop).result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.stop(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    """`atom serve` on a fixed port (so a page can find it again after a restart)."""

    directory: Path
    base_url: str
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[str] | None = None
    admin_key: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> str:
        return str(self.directory / "atom.db")

    def start(self) -> None:
        config = self.directory / "atom.toml"
        models = "".join(
            f"""
[[models]]
name = "{name}"
provider = "openai"
model = "{name}"
base_url = "{self.base_url}"
api_key_env = "{KEY_ENV}"
capabilities = ["text_generation", "summarization", "streaming"]
input_usd_per_mtok = {price_in}
output_usd_per_mtok = {price_out}
quality_prior = {quality}
max_concurrency = 64
"""
            for name, price_in, price_out, quality in (("fast", 0.5, 1.5, 0.6),
                                                       ("slow", 3, 15, 0.8))
        )  # fmt: skip
        config.write_text(f'[log]\npath = "{self.db}"\ndurability = "normal"\n{models}')
        env = {**os.environ, KEY_ENV: "sk-console"}
        self.process = subprocess.Popen(
            [ATOM, "serve", "--config", str(config), "--port", str(self.port), "--rate-limit",
             "0", "--grace", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if re.fullmatch(r"atom_\S+", line.strip()):
                self.admin_key = line.strip()
            if line.startswith("atom: serving on"):
                break
        else:
            raise AssertionError("atom serve ended before serving")
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for _ in self.process.stdout:
            pass

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            assert self.process.wait(30) == 0

    def call(self, method: str, path: str, key: str, body: Any = None) -> tuple[int, Any]:
        """An API call with a key; (status, JSON body)."""
        data = None if body is None else orjson.dumps(body)
        request = urllib.request.Request(
            self.url + path, data=data, method=method,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, orjson.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, orjson.loads(error.read())

    def key(self, role: str, tenant: str | None = None) -> str:
        body = {"role": role, "name": f"console {role}", **({"tenant": tenant} if tenant else {})}
        status, made = self.call("POST", "/api/advanced-ai/admin/keys", self.admin_key, body)
        assert status == 201, made
        key: str = made["key"]
        return key

    def ask(self, key: str, model: str = "fast", prompt: str = "How is the weather?") -> str:
        """One request through the gateway; its id."""
        body = {"model": model, "prompt": prompt, "max_tokens": 32}
        status, answer = self.call("POST", "/api/advanced-ai/process", key, body)
        assert status == 200, answer
        request_id: str = answer["request_id"]
        return request_id

    def ask_streamed(self, key: str, model: str = "slow") -> tuple[str, str]:
        """A streamed request, read to its end; (request id, the answer's text)."""
        body = orjson.dumps({"model": model, "prompt": "Count, please.", "stream": True})
        request = urllib.request.Request(
            self.url + "/api/advanced-ai/process", data=body, method="POST",
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as response:
            done = [line for line in response.read().decode().splitlines() if line]
        final = orjson.loads(done[done.index("event: done") + 1].removeprefix("data: "))
        return final["request_id"], final["text"]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream() as running:
        yield running


@pytest.fixture(scope="module")
def server(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("console"), upstream.fake.base_url)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no Chromium at {CHROMIUM}: ./dev installs Debian's chromium package")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Console:
    """A page of the console, and what its browser said."""

    page: Page
    server: Server
    messages: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def sign_in(self, key: str, view: str = "overview") -> None:
        self.page.goto(f"{self.server.url}/#/{view}")
        self.page.fill("#key", key)
        self.page.click("#sign-in button[type=submit]")
        self.page.wait_for_selector("#connection[data-state=live]")

    def go(self, view: str) -> None:
        self.page.evaluate("view => { location.hash = view; }", f"#/{view}")

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def errors(self) -> list[str]:
        return [m for m in self.messages if not any(p.search(m) for p in self.allowed)]


@pytest.fixture
def console(browser: Browser, server: Server) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    opened = Console(page, server)

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            opened.messages.append(f"{message.type}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: opened.messages.append(f"uncaught: {error}"))
    yield opened
    context.close()
    assert opened.errors() == [], "the browser reported errors"
