"""A small WebDriver BiDi client for Debian's Firefox (firefox-esr), for tests/test_html_browser.py.

Playwright drives only its own patched Firefox builds (never downloaded here), and its experimental
"moz-firefox" channel needs BiDi commands Firefox ESR 153 lacks (emulation.setMediaFeaturesOverride), so
the few commands the interactive page's test needs are spoken directly: navigate, evaluate a script,
click and press keys (real input events), set the window size, take a screenshot; console messages,
script errors and every request the page starts are recorded. The profile sends any http(s) request to a
closed port (127.0.0.1:9), so nothing can reach the network even if the page tried."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox")
START_TIMEOUT_S = 180
KEYS = {"ArrowRight": "\ue014", "ArrowLeft": "\ue012"}  # WebDriver's key codes
OFFLINE_PREFS = {"network.proxy.type": 1, "network.proxy.http": "127.0.0.1", "network.proxy.http_port": 9,
                 "network.proxy.ssl": "127.0.0.1", "network.proxy.ssl_port": 9, "network.proxy.no_proxies_on": "",
                 "browser.shell.checkDefaultBrowser": False, "app.update.enabled": False,
                 "datareporting.policy.dataSubmissionEnabled": False, "toolkit.telemetry.enabled": False}


class Firefox:
    """One headless Firefox with one tab of `size` (CSS pixels)."""

    def __init__(self, size=(1280, 800)):
        from websockets.sync.client import connect

        self.closing = contextlib.ExitStack()  # the connection, closed by close()
        self.profile = Path(tempfile.mkdtemp(prefix="vizcap-firefox-"))
        (self.profile / "user.js").write_text("".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n"
                                                      for k, v in OFFLINE_PREFS.items()))
        log = self.profile / "stderr.log"  # a file, not a pipe: a full pipe would stop Firefox
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([FIREFOX, "--headless", "--remote-debugging-port=0", "--profile",
                                          str(self.profile), "--no-remote", "about:blank"],
                                         stdout=subprocess.DEVNULL, stderr=out)
        address, deadline = None, time.time() + START_TIMEOUT_S
        while address is None and time.time() < deadline and self.proc.poll() is None:
            # Firefox says where it listens once it is ready
            found = re.search(r"WebDriver BiDi listening on (ws://\S+)", log.read_text(errors="replace"))
            if found:
                address = found.group(1)
            else:
                time.sleep(0.2)
        if address is None:
            said = log.read_text(errors="replace")[-2000:]
            self.close()
            raise RuntimeError(f"Firefox did not start its WebDriver BiDi server:\n{said}")
        self.ws = self.closing.enter_context(connect(address + "/session", max_size=None, open_timeout=60))
        self.sent, self.events = 0, []
        self.send("session.new", {"capabilities": {}})
        self.context = self.send("browsingContext.getTree", {})["contexts"][0]["context"]
        self.send("session.subscribe", {"events": ["log.entryAdded", "network.beforeRequestSent"]})
        self.send("browsingContext.setViewport", {"context": self.context,
                                                  "viewport": {"width": size[0], "height": size[1]}})
        self.send("script.addPreloadScript", {"functionDeclaration": (  # what a Content-Security-Policy blocked
            "() => { window.__blocked = []; document.addEventListener('securitypolicyviolation', "
            "(e) => window.__blocked.push(e.blockedURI + ' ' + e.violatedDirective)); }")})

    def send(self, method: str, params: dict) -> dict:
        self.sent += 1
        self.ws.send(json.dumps({"id": self.sent, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=300))
            if message.get("type") == "event":
                self.events.append(message)
            elif message.get("id") == self.sent:
                if message.get("type") == "error":
                    raise RuntimeError(f"{method}: {message.get('error')}: {message.get('message')}")
                return message["result"]

    def goto(self, url: str) -> None:
        self.send("browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"})

    def js(self, expression: str):
        """The value of a JavaScript expression (awaited), through JSON."""
        result = self.send("script.evaluate", {
            "expression": f"(async () => JSON.stringify(await ({expression})))()",
            "target": {"context": self.context}, "awaitPromise": True})
        if result["type"] == "exception":
            raise RuntimeError(result["exceptionDetails"]["text"])
        value = result["result"].get("value")
        return None if value is None else json.loads(value)

    def wait_for(self, expression: str, timeout_s: float = 60) -> None:
        deadline = time.time() + timeout_s
        while not self.js(expression):
            if time.time() > deadline:
                raise TimeoutError(expression)
            time.sleep(0.2)

    def click(self, selector: str, index: int = 0) -> None:
        """A real mouse click in the middle of the element."""
        x, y = self.js(f"(() => {{ const b = document.querySelectorAll({json.dumps(selector)})[{index}]"
                       ".getBoundingClientRect(); return [b.x + b.width / 2, b.y + b.height / 2]; })()")
        self.send("input.performActions", {"context": self.context, "actions": [{
            "type": "pointer", "id": "mouse", "actions": [
                {"type": "pointerMove", "x": round(x), "y": round(y)},
                {"type": "pointerDown", "button": 0}, {"type": "pointerUp", "button": 0}]}]})

    def press(self, key: str) -> None:
        self.send("input.performActions", {"context": self.context, "actions": [{
            "type": "key", "id": "keyboard", "actions": [{"type": "keyDown", "value": KEYS[key]},
                                                         {"type": "keyUp", "value": KEYS[key]}]}]})

    def screenshot(self, path: Path, full_page: bool = False) -> None:
        shot = self.send("browsingContext.captureScreenshot",
                         {"context": self.context, **({"origin": "document"} if full_page else {})})
        Path(path).write_bytes(base64.b64decode(shot["data"]))

    def console(self) -> list[str]:
        """Every console message and uncaught script error so far."""
        return [f"{e['params'].get('level')}: {e['params'].get('text')}" for e in self.events
                if e["method"] == "log.entryAdded"]

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "network.beforeRequestSent"]

    def close(self) -> None:
        try:
            self.closing.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)
