"""Screenshots of the MLflow UI for the README, taken with headless Chromium.

    python scripts/ui_screenshots.py --url http://127.0.0.1:5000 --experiment-id 1 \
        --run-id RUN --out docs/

MLflow's UI is a single-page app whose column choices and expanded rows live in the browser, so
the page is driven over the Chrome DevTools Protocol (a minimal websocket client, stdlib only):
expand the sweep's parent run, tick metric columns, then capture the page.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

METRIC_COLUMNS = ("accuracy", "flops_ratio", "latency_ms", "throughput")


class DevTools:
    """One page's DevTools websocket: ``call(method, **params)`` returns the result."""

    def __init__(self, ws_url: str) -> None:
        host_port, path = ws_url.removeprefix("ws://").split("/", 1)
        host, port = host_port.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(4096)
        self.buffer, self.next_id = response.split(b"\r\n\r\n", 1)[1], 0

    def _send(self, text: str) -> None:
        data, mask = text.encode(), os.urandom(4)
        n = len(data)
        header = b"\x81" + (bytes([0x80 | n]) if n < 126 else
                            b"\xfe" + struct.pack(">H", n) if n < 65536 else
                            b"\xff" + struct.pack(">Q", n))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self.buffer += self.sock.recv(1 << 20)
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def _receive(self) -> dict:
        payload = b""
        while True:
            first, second = self._read(2)
            n = second & 0x7F
            n = struct.unpack(">H", self._read(2))[0] if n == 126 else (
                struct.unpack(">Q", self._read(8))[0] if n == 127 else n)
            payload += self._read(n)
            if first & 0x80:
                return json.loads(payload)

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = self._receive()
            if message.get("id") == self.next_id:
                return message.get("result", {})

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True,
                           returnByValue=True)
        return result.get("result", {}).get("value")

    def goto(self, url: str, settle: float) -> None:
        self.call("Page.navigate", url=url)
        time.sleep(settle)

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))


def _click_text(tools: DevTools, text: str, selector: str = "button, [role=button], label, "
                "[role=menuitemcheckbox], [role=option], span") -> bool:
    return bool(tools.js(f"""(() => {{
        const hits = [...document.querySelectorAll({json.dumps(selector)})]
            .filter(e => e.textContent.trim() === {json.dumps(text)});
        if (!hits.length) return false;
        hits[hits.length - 1].click(); return true; }})()"""))


def _prepare_runs_table(tools: DevTools) -> None:
    # close the assistant side panel, expand the parent run, tick the metric columns
    tools.js("""[...document.querySelectorAll('button[aria-label]')]
        .filter(b => /close/i.test(b.getAttribute('aria-label'))).forEach(b => b.click())""")
    tools.js("""[...document.querySelectorAll('button[data-component-id*=runnamecellrenderer]')]
        .slice(0, 1).forEach(b => b.click())""")
    time.sleep(2)
    _click_text(tools, "Columns")
    time.sleep(2)
    for name in METRIC_COLUMNS:
        _click_text(tools, name)
        time.sleep(0.5)
    tools.call("Input.dispatchKeyEvent", type="keyDown", key="Escape", code="Escape",
               windowsVirtualKeyCode=27)
    time.sleep(3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--experiment-id", required=True)
    parser.add_argument("--run-id", required=True, help="the child run to show with its model")
    parser.add_argument("--out", default="docs")
    parser.add_argument("--port", type=int, default=9337)
    args = parser.parse_args()
    profile = tempfile.mkdtemp(prefix="hetero-chromium-")
    browser = subprocess.Popen(
        [shutil.which("chromium") or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1800,1000",
         f"--remote-debugging-port={args.port}", f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{args.port}/json"))
        tools = DevTools(next(p for p in pages if p["type"] == "page")["webSocketDebuggerUrl"])
        tools.call("Page.enable")
        out = Path(args.out)
        tools.goto(f"{args.url}/#/experiments/{args.experiment_id}/runs", settle=12)
        _prepare_runs_table(tools)
        tools.screenshot(out / "mlflow_experiment.png")
        tools.goto(f"{args.url}/#/experiments/{args.experiment_id}/runs/{args.run_id}", settle=12)
        tools.screenshot(out / "mlflow_child_run.png")
    finally:
        browser.terminate()
        browser.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
