"""Drive a headless chromium over the DevTools protocol, with aiohttp (which textual-serve brings).

Just enough for the `nctui serve` browser test: open a page, read the websocket frames the page
receives, type keys, take screenshots and count pixels of a colour in one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import aiohttp

# what works as root in a container, without a GPU, a session bus or the network
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,720")
# counts the pixels of one colour in a PNG, decoded by the browser itself (no imaging library here)
_COUNT_COLOUR_JS = """(async () => {
  const image = new Image();
  image.src = "data:image/png;base64,%s";
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = image.width; canvas.height = image.height;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let count = 0;
  for (let i = 0; i < data.length; i += 4)
    if (data[i] === %d && data[i + 1] === %d && data[i + 2] === %d) count++;
  return count / (data.length / 4);
})()"""


def find_chromium() -> str | None:
    """Debian's chromium (or another name it goes by), if installed."""
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


class Page:
    """One browser tab: protocol calls, the events received, and the tab's websocket traffic."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self.events: list[dict] = []
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for message in self._socket:
            payload = message.json()
            future = self._pending.pop(payload.get("id", -1), None)
            if future is None:
                self.events.append(payload)
            elif "error" in payload:
                future.set_exception(RuntimeError(f"devtools: {payload['error']}"))
            else:
                future.set_result(payload.get("result", {}))

    async def call(self, method: str, **params: Any) -> dict:
        """Send one protocol command and wait for its result."""
        call_id = next(self._ids)
        self._pending[call_id] = asyncio.get_running_loop().create_future()
        await self._socket.send_json({"id": call_id, "method": method, "params": params})
        return await asyncio.wait_for(self._pending[call_id], 30)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited) in the page."""
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"devtools: {result['exceptionDetails']}")
        return result["result"].get("value")

    def websocket_bytes(self) -> bytes:
        """Everything the page's websockets received so far (needs Network.enable)."""
        frames = [event["params"]["response"] for event in self.events
                  if event.get("method") == "Network.webSocketFrameReceived"]
        return b"".join(base64.b64decode(frame["payloadData"]) if frame["opcode"] == 2
                        else frame["payloadData"].encode() for frame in frames)

    async def wait_until(self, condition: Callable[[], Any], timeout: float, what: str) -> None:
        """Poll `condition` (a plain or async callable) until true; AssertionError naming `what`."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"after {timeout:.0f} s: {what}")
            await asyncio.sleep(0.2)

    async def press(self, key: str) -> None:
        """Type one printable key into the focused element."""
        code = f"Digit{key}" if key.isdigit() else f"Key{key.upper()}"
        common = {"key": key, "code": code, "windowsVirtualKeyCode": ord(key.upper())}
        await self.call("Input.dispatchKeyEvent", type="keyDown", text=key, **common)
        await self.call("Input.dispatchKeyEvent", type="keyUp", **common)

    async def screenshot(self) -> bytes:
        """The viewport as PNG bytes."""
        return base64.b64decode((await self.call("Page.captureScreenshot", format="png"))["data"])

    async def colour_fraction(self, png: bytes, rgb: tuple[int, int, int]) -> float:
        """The fraction of the PNG's pixels that are exactly `rgb`."""
        return await self.evaluate(_COUNT_COLOUR_JS % (base64.b64encode(png).decode(), *rgb))

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def chromium_page(executable: str, startup_timeout: float = 30) -> AsyncIterator[Page]:
    """A blank tab of a fresh headless chromium (own profile, own process group, killed after)."""
    with tempfile.TemporaryDirectory(prefix="nctui-chromium-") as profile:
        log = open(Path(profile) / "chromium.log", "wb")
        process = subprocess.Popen([executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                    "--remote-debugging-port=0", "about:blank"],
                                   stdout=log, stderr=log, start_new_session=True)
        try:
            port = await _devtools_port(Path(profile), process, startup_timeout)
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                    targets = await response.json()
                url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
                async with session.ws_connect(url, max_msg_size=0) as socket:
                    page = Page(socket)
                    try:
                        yield page
                    finally:
                        await page.close()
        finally:
            stop_process_group(process)
            log.close()


async def _devtools_port(profile: Path, process: subprocess.Popen, timeout: float) -> int:
    """The port chromium chose, from the DevToolsActivePort file it writes into its profile."""
    deadline = time.monotonic() + timeout
    active = profile / "DevToolsActivePort"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited ({process.returncode}): "
                               + (profile / "chromium.log").read_text(errors="replace")[-2000:])
        lines = active.read_text().splitlines() if active.exists() else []
        if len(lines) >= 2:
            return int(lines[0])
        await asyncio.sleep(0.1)
    raise RuntimeError(f"chromium did not open its DevTools port within {timeout:.0f} s")


def stop_process_group(process: subprocess.Popen, grace: float = 5) -> None:
    """SIGTERM a process group started with start_new_session, wait for its leader, then SIGKILL
    the group: nothing of it (viewers, renderers) outlives a test."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
