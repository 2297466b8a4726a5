"""Open a local HTML file in headless Chromium over the DevTools protocol and say what happened.

Chromium runs with its own profile in a temporary folder, listens for
DevTools on a port it picks (read back from ``DevToolsActivePort``), and is
kept off the network: every host resolves to nothing but 127.0.0.1 and
every request goes to a proxy there that does not exist.

    from _chromium import find_chromium, open_page
    page = open_page(find_chromium(), Path("report.html"), tmp_path, screenshot=tmp_path / "report.png")
    assert not page.errors and all(img["naturalWidth"] for img in page.images)
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
START_TIMEOUT_S = 20.0
LOAD_TIMEOUT_S = 20.0

_FLAGS = (
    "--headless=new",
    "--remote-debugging-port=0",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--no-pings",
    "--metrics-recording-only",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    # Nothing leaves the machine: no name resolves, and any request meets a dead local proxy.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--proxy-server=127.0.0.1:9",
    "--hide-scrollbars",
    "--window-size=1280,900",
)


def find_chromium() -> str | None:
    """The Chromium executable on PATH, or None."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class Page:
    """What the page did: console errors and exceptions, its images, and the screenshot's size."""

    errors: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    title: str = ""
    screenshot: Path | None = None
    seconds: float = 0.0


class _Session:
    """One DevTools websocket, commands to one page target (flat session), events collected."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.session_id: str | None = None
        self.events: list[dict[str, Any]] = []

    async def call(
        self, method: str, timeout: float = LOAD_TIMEOUT_S, **params: Any
    ) -> dict[str, Any]:
        msg_id = next(self.ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if self.session_id and not method.startswith("Target."):
            msg["sessionId"] = self.session_id
        await self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(await asyncio.wait_for(self.ws.recv(), deadline - time.monotonic()))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError("%s: %s" % (method, reply["error"]))
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    async def wait_event(self, method: str, timeout: float = LOAD_TIMEOUT_S) -> dict[str, Any]:
        for ev in self.events:
            if ev["method"] == method:
                return ev
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), deadline - time.monotonic()))
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == method:
                    return msg


def _port(profile: Path, proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    active = profile / "DevToolsActivePort"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("chromium exited with status %s before listening" % proc.returncode)
        try:
            port, path = active.read_text().split("\n")[:2]
            if port and path:
                return int(port), path
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.05)
    raise RuntimeError("chromium did not write %s within %.0f s" % (active, START_TIMEOUT_S))


async def _drive(url: str, ws_url: str, screenshot: Path | None) -> Page:
    page = Page()
    async with websockets.connect(ws_url, max_size=None, open_timeout=START_TIMEOUT_S) as ws:
        s = _Session(ws)
        target = await s.call("Target.createTarget", url="about:blank")
        attached = await s.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        s.session_id = attached["sessionId"]
        for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
            await s.call(domain)
        await s.call("Page.navigate", url=url)
        await s.wait_event("Page.loadEventFired")
        result = await s.call(
            "Runtime.evaluate",
            expression="JSON.stringify({title: document.title, images: Array.from(document.images,"
            " i => ({complete: i.complete, naturalWidth: i.naturalWidth,"
            " naturalHeight: i.naturalHeight, alt: i.alt}))})",
            returnByValue=True,
        )
        facts = json.loads(result["result"]["value"])
        page.title, page.images = facts["title"], facts["images"]
        if screenshot is not None:
            metrics = await s.call("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            shot = await s.call(
                "Page.captureScreenshot",
                format="png",
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
            )
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            page.screenshot = screenshot
        # Late console output (after load) still counts: drain briefly.
        try:
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 0.3))
                if "method" in msg:
                    s.events.append(msg)
        except TimeoutError:
            pass
        try:
            await s.call("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, websockets.ConnectionClosed):
            pass
    for ev in s.events:
        method, params = ev["method"], ev.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = params["exceptionDetails"]
            page.errors.append(
                "exception: %s" % d.get("exception", {}).get("description", d.get("text"))
            )
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(
                str(a.get("value", a.get("description", ""))) for a in params.get("args", [])
            )
            (page.errors if params.get("type") in ("error", "assert") else page.messages).append(
                "console.%s: %s" % (params.get("type"), text)
            )
        elif method == "Log.entryAdded":
            e = params["entry"]
            line = "log %s (%s): %s %s" % (
                e.get("level"),
                e.get("source"),
                e.get("text"),
                e.get("url", ""),
            )
            (page.errors if e.get("level") == "error" else page.messages).append(line)
    return page


def open_page(
    chromium: str, html_file: Path, profile: Path, screenshot: Path | None = None
) -> Page:
    """Load ``html_file`` in a fresh headless Chromium (profile folder ``profile``); what it saw."""
    profile.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    log = profile / "chromium.log"  # a file, not a pipe: a chatty browser never blocks on it
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [chromium, *_FLAGS, "--user-data-dir=%s" % profile, "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
        )
    try:
        port, path = _port(profile, proc)
        page = asyncio.run(
            _drive(html_file.resolve().as_uri(), "ws://127.0.0.1:%d%s" % (port, path), screenshot)
        )
    except BaseException:
        proc.kill()
        proc.wait(timeout=10)
        print("chromium's output:\n" + log.read_text("utf-8", "replace")[-4000:])
        raise
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    page.seconds = time.monotonic() - t0
    return page
