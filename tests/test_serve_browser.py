"""The page ``drn serve`` answers at ``/``, driven in headless Chromium over the Chrome DevTools Protocol
(a websocket; no browser driver): a PNG made here goes through the page's file input, the Upscale
button is clicked with mouse events, and the PNG the page offers for download (the blob it made from
the server's answer) must be, byte for byte, ``drn upscale``'s file for the same input, model and
runtime. A file that is no image must show the server's error on the page. Skipped when no Chromium
is installed (``apt-get install chromium``)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from drn_tf.cli.main import main as cli_main
from serve_helpers import HOST, decode, png_bytes, spawn_server, stop_server, wait_ready

pytest.importorskip("kserve")
websocket = pytest.importorskip("websocket")  # websocket-client

PRESET = "drn_s_x2"
CHROMIUM = next((p for p in (os.environ.get("DRN_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if p), None)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium) for the browser test")]


class Browser:
    """Headless Chromium and one page of it, spoken to over the DevTools Protocol."""

    def __init__(self, profile: Path, width: int = 1280, height: int = 900):
        args = [CHROMIUM, "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--remote-debugging-port=0",
                f"--window-size={width},{height}", "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium's sandbox refuses to run as root
        self.log = profile.parent / "chromium.log"
        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT)
        try:
            self.ws = websocket.create_connection(self._page_socket(profile / "DevToolsActivePort"), timeout=60,
                                                  suppress_origin=True)
        except Exception:
            self.close()
            raise
        self._id = 0
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def _page_socket(self, port_file: Path, within: float = 60.0) -> str:
        end = time.monotonic() + within
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}: {self.log.read_text(errors='replace')[-2000:]}")
            if port_file.exists() and port_file.read_text().strip():
                port = port_file.read_text().split()[0]
                try:
                    with urllib.request.urlopen(f"http://{HOST}:{port}/json/list", timeout=5) as r:
                        pages = [t for t in json.load(r) if t["type"] == "page"]
                    if pages:
                        return pages[0]["webSocketDebuggerUrl"]
                except OSError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"no DevTools endpoint within {within} s: {self.log.read_text(errors='replace')[-2000:]}")

    def call(self, method: str, **params) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:  # events in between are not needed
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def js(self, expression: str, *, wait: bool = False):
        """The value of a JavaScript expression in the page (a promise's value with ``wait``)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=wait)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def until(self, expression: str, within: float = 120.0):
        """Polls ``expression`` until it is truthy; its value."""
        end = time.monotonic() + within
        while time.monotonic() < end:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.2)
        shown = self.js("document.getElementById('status').textContent")
        raise AssertionError(f"not true within {within} s: {expression}; the page says {shown!r}")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.until("document.readyState === 'complete' && document.getElementById('model').options.length > 0", 60)

    def choose_file(self, selector: str, path: Path) -> None:
        root = self.call("DOM.getDocument")["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        self.call("DOM.setFileInputFiles", files=[str(path)], nodeId=node)

    def click(self, selector: str) -> None:
        """A left click with mouse events at the element's centre, as a person would."""
        box = self.js(f"(b => [b.x + b.width / 2, b.y + b.height / 2])(document.querySelector('{selector}').getBoundingClientRect())")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        path.write_bytes(data)
        return data

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


SHOWN = "document.getElementById('{}').getClientRects().length > 0"  # laid out: neither hidden nor inside hidden


def _photo() -> np.ndarray:
    """A 120x160 picture with gradients, edges and noise (something to look at in the screenshot)."""
    y, x = np.mgrid[0:120, 0:160]
    image = np.stack([x * 1.5, y * 2.0, 255 - x * 0.8], axis=-1)
    image[((x // 20) + (y // 20)) % 2 == 0] *= 0.6
    image += np.random.default_rng(3).normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def page_setup(tmp_path_factory):
    """(server, the input file, drn upscale's PNG of it, a folder for the browser)."""
    tmp = tmp_path_factory.mktemp("browser")
    src, ref = tmp / "in", tmp / "ref"
    src.mkdir()
    (src / "photo.png").write_bytes(png_bytes(_photo()))
    server = spawn_server(tmp, PRESET, "--runtime", "keras", "--kind", "clean")
    try:
        assert cli_main(["upscale", str(src), "-o", str(ref), "--format", "png", "--preset", PRESET,
                         "--runtime", "keras", "--kind", "clean", "-q"]) == 0
        yield wait_ready(server), src / "photo.png", (ref / "photo_x2.png").read_bytes(), tmp
    finally:
        stop_server(server)


@pytest.fixture
def browser(page_setup):
    browser = Browser(page_setup[3] / f"profile_{time.monotonic_ns()}")
    try:
        yield browser
    finally:
        browser.close()


def test_page_upscales_a_png_like_drn_upscale(page_setup, browser):
    server, image, reference, tmp = page_setup
    browser.open(server.url + "/")
    assert browser.js("[...document.getElementById('model').options].map(o => o.value)") == [PRESET]
    assert browser.js("document.getElementById('go').disabled") is True  # nothing chosen yet
    assert browser.js(SHOWN.format("result")) is False and browser.js(SHOWN.format("download")) is False
    browser.choose_file("#file", image)
    browser.until("!document.getElementById('go').disabled", 10)
    browser.click("#go")
    status = browser.until("document.getElementById('after').naturalWidth > 0 && "
                           "/ in [0-9.]+ s$/.test(document.getElementById('status').textContent) && "
                           "document.getElementById('status').textContent")
    assert status.startswith("photo.png: 320x240 in "), status
    assert browser.js("document.getElementById('status').className") == ""
    assert browser.js("[document.getElementById('after').naturalWidth, document.getElementById('after').naturalHeight]") == [320, 240]
    assert browser.js("document.getElementById('download').download") == f"photo_{PRESET}.png"
    assert browser.js(SHOWN.format("compare")) and browser.js(SHOWN.format("download"))
    # shown at its own size, the slider as wide as the picture it splits
    assert browser.js("[document.getElementById('compare').offsetWidth, document.getElementById('slider').offsetWidth]") == [320, 320]
    # the file the page offers for download: the blob it made from the server's answer
    png = base64.b64decode(browser.js("fetch(document.getElementById('download').href)"
                                      ".then(r => r.arrayBuffer()).then(base64)", wait=True))
    assert png == reference
    assert decode(png).shape == (240, 320, 3)
    # the slider moves the split between before and after
    browser.js("(s => { s.value = 20; s.dispatchEvent(new Event('input')); })(document.getElementById('slider'))")
    assert browser.js("document.getElementById('before').style.clipPath") == "inset(0px 80% 0px 0px)"
    shot = browser.screenshot(tmp / "page.png")
    assert decode(shot).shape[:2] == (900, 1280)


def test_page_shows_the_servers_refusal(page_setup, browser, tmp_path):
    server = page_setup[0]
    (tmp_path / "notes.png").write_bytes(b"these are notes, not a picture")
    browser.open(server.url + "/")
    browser.choose_file("#file", tmp_path / "notes.png")
    browser.until("!document.getElementById('go').disabled", 10)
    browser.click("#go")
    message = browser.until("document.getElementById('status').className === 'error' && "
                            "document.getElementById('status').textContent", 60)
    assert "not an image" in message
    assert browser.js(SHOWN.format("result")) is False  # no result shown
    browser.screenshot(page_setup[3] / "refusal.png")
    assert not browser.js("document.getElementById('go').disabled")  # ready for another try
