"""The console under load: is the page usable at 1,000 requests/s, and what does it cost?

    .venv/bin/python bench/console_bench.py [--seconds 20] [--concurrency 64]

The same three processes as bench/gateway_bench.py (a fake OpenAI upstream answering at
once, `atom serve` in front of it, a load generator in its own process), plus headless
Chromium (Debian's, /usr/bin/chromium, driven by Playwright) showing the console, signed in
as an operator, so that it sees every request. Load runs at the given concurrency on
/v1/chat/completions three times: with no page open, with the overview open and with the
live requests open (every request's states stream to the page from the log). While the load
runs the page is measured from inside: animation frames per second and long tasks (time the
main thread was blocked for more than 50 ms), WebSocket items received and feed redraws per
second, the JavaScript heap, and the time from a click to its result (switching the overview
to the day's figures, which reads them again from the loaded server; opening a request in
the feed). Progress lines start with '#'; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from gateway_bench import MESSAGES, MODEL, atom_serve, cpu_seconds, fake_upstream, load
from playwright.sync_api import Page, sync_playwright

CHROMIUM = os.environ.get("ATOM_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

# Installed in the page before the load: counts frames, long tasks and the feed's redraws.
PROBE = """() => {
  const probe = window.__probe = { frames: 0, longMs: 0, longest: 0, draws: 0, items: 0 };
  const tick = () => { probe.frames += 1; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      probe.longMs += entry.duration;
      probe.longest = Math.max(probe.longest, entry.duration);
    }
  }).observe({ type: "longtask", buffered: false });
  const feed = document.querySelector("[data-testid=feed]");
  if (feed) new MutationObserver(() => { probe.draws += 1; }).observe(feed, { childList: true });
}"""
READ = """() => {
  const p = window.__probe;
  const rate = document.querySelector("[data-testid=feed-rate]");
  const received = rate ? Number(rate.textContent.split("·")[1].replace(/[^0-9]/g, "")) : 0;
  return { ...p, received, heap: performance.memory ? performance.memory.usedJSHeapSize : 0 };
}"""
CLICK_DAY = """() => new Promise((resolve) => {
  const counters = document.querySelector(".counters");
  const started = performance.now();
  new MutationObserver((_, observer) => {
    const label = document.querySelector("[data-testid=counter-requests] .label");
    if (label.textContent.includes("day")) {
      observer.disconnect();
      resolve(performance.now() - started);
    }
  }).observe(counters, { childList: true, subtree: true });
  const select = document.querySelector("[data-testid=window]");
  select.value = "day";
  select.dispatchEvent(new Event("change"));
})"""
CLICK_ROW = """() => new Promise((resolve) => {
  const watch = document.querySelector("[data-testid=watch]");
  const started = performance.now();
  new MutationObserver((_, observer) => {
    if (watch.querySelector("[data-testid=tokens]")) {
      observer.disconnect();
      resolve(performance.now() - started);
    }
  }).observe(watch, { childList: true, subtree: true });
  document.querySelector("[data-testid=feed-table] tbody tr").click();
})"""


def _say(message: str) -> None:
    print(f"# {message}", flush=True)


def _under_load(
    url: str, auth: dict[str, str], concurrency: int, seconds: float, during: Callable[[], Any]
) -> tuple[dict[str, Any], Any]:
    """Run the load for `seconds` while `during()` runs here; the load's figures and its result."""
    body = {"model": MODEL, "messages": MESSAGES}
    figures: dict[str, Any] = {}

    def run() -> None:
        figures.update(load(url, body, concurrency, 10_000_000, seconds, auth))

    thread = threading.Thread(target=run)
    thread.start()
    result = during()
    thread.join()
    return figures, result


def _measure_page(page: Page, seconds: float, click: str) -> dict[str, Any]:
    """What the page did over `seconds` of load, and one click's latency half-way."""
    page.evaluate(PROBE)
    start = page.evaluate(READ)
    time.sleep(seconds / 2)
    click_ms = page.evaluate(click)
    time.sleep(max(0.0, seconds / 2 - 2))
    end = page.evaluate(READ)
    span = seconds - 2
    return {
        "fps": round((end["frames"] - start["frames"]) / span, 1),
        "long_task_ms_per_s": round(end["longMs"] / span, 1),
        "longest_task_ms": round(end["longest"], 1),
        "feed_items_per_s": round((end["received"] - start["received"]) / span, 1),
        "feed_redraws_per_s": round(end["draws"] / span, 2),
        "heap_mb": round(end["heap"] / 1e6, 1),
        "click_ms": round(click_ms, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="load per measurement")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--durability", default="normal", choices=("full", "normal"))
    args = parser.parse_args()
    started = time.perf_counter()
    result: dict[str, Any] = {
        "bench": "console",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "concurrency": args.concurrency,
        "durability": args.durability,
    }
    with (
        fake_upstream() as base_url,
        tempfile.TemporaryDirectory(prefix="atom-console-bench-") as directory,
        atom_serve(directory, base_url, args.durability) as server,
        sync_playwright() as playwright,
    ):
        auth = {"Authorization": f"Bearer {server.key}"}
        chat = f"{server.url}/v1/chat/completions"
        load(chat, {"model": MODEL, "messages": MESSAGES}, args.concurrency, 3000, 60, auth)
        _say(f"atom serve pid {server.pid} at {server.url}, warmed up")

        def gateway(name: str, during: Callable[[], Any]) -> Any:
            cpu = cpu_seconds(server.pid)
            figures, page = _under_load(chat, auth, args.concurrency, args.seconds, during)
            figures.pop("error_samples", None)
            figures["server_cpu_ms_per_request"] = round(
                (cpu_seconds(server.pid) - cpu) * 1000 / max(1, figures["requests"]), 3
            )
            result[name] = {"gateway": figures, **({"page": page} if page else {})}
            _say(f"{name}: {figures['rps']} req/s, p99 {figures['p99_ms']} ms, "
                 f"{figures['errors']} errors, {figures['server_cpu_ms_per_request']} ms CPU/req"
                 + (f"; page {page}" if page else ""))  # fmt: skip
            return page

        gateway("no_page", lambda: time.sleep(args.seconds))
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{server.url}/#/overview")
        page.fill("#key", server.key)
        page.click("#sign-in button[type=submit]")
        page.wait_for_selector("[data-testid=counter-requests]")
        gateway("overview_page", lambda: _measure_page(page, args.seconds, CLICK_DAY))
        page.evaluate("() => { location.hash = '#/live'; }")
        page.wait_for_selector("[data-testid=feed-table] tbody tr")
        gateway("live_page", lambda: _measure_page(page, args.seconds, CLICK_ROW))
        result["connection_after"] = page.get_attribute("#connection", "data-state")
        result["page_errors"] = errors
        status = page.evaluate(
            "() => fetch('/api/advanced-ai/streaming/status', {headers: {Authorization: "
            "'Bearer ' + JSON.parse(sessionStorage.getItem('atom.session')).token}})"
            ".then(r => r.json())"
        )
        result["slow_clients_cut"] = status["slow_clients_cut"]
        browser.close()
    no_page = result["no_page"]["gateway"]
    result["overhead_overview_pct"] = round(
        100 * (1 - result["overview_page"]["gateway"]["rps"] / no_page["rps"]), 1
    )
    result["overhead_live_pct"] = round(
        100 * (1 - result["live_page"]["gateway"]["rps"] / no_page["rps"]), 1
    )
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(orjson.dumps(result).decode(), flush=True)


if __name__ == "__main__":
    main()
