"""`nctui serve`: the monitor in a browser, one viewer process per tab, behind loopback and a token.

Argument checks in process; the page, the guard and the websocket against an in-process
aiohttp server whose viewers are real `python -m nctui.serve` processes; and a real headless
chromium that loads the page, shows the monitor and switches panes with the keyboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import AsyncIterator, Iterator

import aiohttp
import click
import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from devtools import chromium_page, find_chromium, stop_process_group
from nctui.cli import main
from nctui.serve import INSTALL_HINT, check_target, make_server, offline_template, serve
from nctui.store.sweepdir import write_manifest

REPO = Path(__file__).resolve().parent.parent
TOKEN = "s3cret-token"
PANEL_BACKGROUND = (18, 18, 18)   # the monitor's panes (Textual's dark theme); the page itself is #0c181f


def nctui_serve(*args: str) -> list[str]:
    """`nctui serve ARGS` for a subprocess (this interpreter, this checkout)."""
    return [sys.executable, "-m", "nctui", "serve", *args]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished quickstart run of two epochs (a few seconds), as a user would make it."""
    out = tmp_path_factory.mktemp("serve_runs")
    done = subprocess.run([sys.executable, "-m", "nctui", "run",
                           str(REPO / "presets" / "quickstart.yaml"), "--headless", "--set", "train.epochs=2",
                           "--set", "train.threads=1", "--out", str(out)],   # one thread: fastest on a busy machine
                          cwd=out, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    (run_dir,) = [path for path in out.iterdir() if path.is_dir()]
    return run_dir


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def invoke_serve(*args: str):
    """`nctui serve ARGS` in this process."""
    return CliRunner().invoke(main, ["serve", *args], catch_exceptions=False)


def one_error_line(result, *fragments: str) -> str:
    """The single `nctui: error:` line a refused command printed (exit 2), checked to contain `fragments`."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nctui: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


# --- arguments ------------------------------------------------------------------------------------

def test_without_textual_serve_it_names_the_extra(monkeypatch: pytest.MonkeyPatch, finished_run: Path) -> None:
    monkeypatch.setitem(sys.modules, "textual_serve", None)   # makes `import textual_serve` fail
    line = one_error_line(invoke_serve(str(finished_run)))
    assert line == f"nctui: error: nctui serve needs textual-serve: {INSTALL_HINT}"
    assert INSTALL_HINT == 'pip install -e ".[serve]"'


def test_bad_paths_are_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text("{not json")
    one_error_line(invoke_serve(str(tmp_path / "missing")), "missing: no such directory")
    one_error_line(invoke_serve(str(tmp_path / "file.txt")), "file.txt: no such directory")
    one_error_line(invoke_serve(str(tmp_path / "empty")), "empty: not a run or sweep directory",
                   "run.json", "sweep.json")
    one_error_line(invoke_serve(str(broken)), "run.json: not valid JSON")


def test_run_and_sweep_directories_are_accepted(tmp_path: Path, finished_run: Path) -> None:
    sweep = tmp_path / "wd_rank-20250101T000000Z"
    sweep.mkdir()
    point = {"name": "wd=0", "values": {"train.weight_decay": 0}, "run_dir": "wd=0",
             "overrides": ["train.weight_decay=0"], "status": "pending"}
    write_manifest(sweep, {"name": "wd_rank", "base_file": "base.yaml", "spec": {}, "varying": ["train.weight_decay"],
                           "points": [point]})
    assert check_target(sweep) == sweep.resolve()
    assert check_target(finished_run) == finished_run.resolve()
    (sweep / "sweep.json").write_text(json.dumps({"name": "wd_rank"}))
    one_error_line(invoke_serve(str(sweep)), "sweep.json: not an nctui sweep manifest")


def test_other_hosts_need_public_and_hear_there_is_no_authentication(
        monkeypatch: pytest.MonkeyPatch, finished_run: Path) -> None:
    one_error_line(invoke_serve(str(finished_run), "--host", "0.0.0.0"), "--public", "no authentication")
    one_error_line(invoke_serve(str(finished_run), "--host", "192.168.1.5", "--port", "9000"), "--public")
    one_error_line(invoke_serve(str(finished_run), "--token", " "), "--token is empty")
    started = []

    class Recorder:
        def serve(self) -> None:
            started.append(True)

    monkeypatch.setattr("nctui.serve.make_server", lambda target, **options: started.append(options) or Recorder())
    result = invoke_serve(str(finished_run), "--host", "0.0.0.0", "--public")
    assert result.exit_code == 0, result.output
    assert "textual-serve has no authentication" in result.stderr and "add --token" in result.stderr
    assert started == [{"host": "0.0.0.0", "port": 8000, "token": None, "public": True}, True]
    for host in ("localhost", "127.0.0.1", "::1", "127.0.0.2"):   # loopback needs no flag and hears no warning
        result = invoke_serve(str(finished_run), "--host", host)
        assert result.exit_code == 0 and result.stderr == "", (host, result.stderr)


def test_a_busy_port_is_one_line_and_exit_2(finished_run: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(nctui_serve(str(finished_run), "--port", str(port)),
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1].startswith(f"nctui: error: cannot listen on 127.0.0.1:{port}: ")
    assert "Traceback" not in done.stderr


def test_registered_in_the_cli() -> None:
    assert main.get_command(click.Context(main), "serve") is serve
    assert "serve" in main.list_commands(click.Context(main))


# --- the page, the guard and the websocket, in process ---------------------------------------------

@contextlib.asynccontextmanager
async def serving(target: Path, **options: object) -> AsyncIterator[TestClient]:
    """A test client of `make_server(target, **options)` on a free port, in this event loop."""
    port = free_port()
    server = make_server(target, port=port, **options)
    async with TestClient(TestServer(await server._make_app(), port=port)) as client:
        yield client


@pytest.fixture
async def client(finished_run: Path) -> AsyncIterator[TestClient]:
    async with serving(finished_run) as test_client:
        yield test_client


async def terminal_output(websocket, until: str, timeout: float = 60) -> str:
    """What the viewer drew, as text with escape codes, once it contains `until`."""
    received = b""
    deadline = time.monotonic() + timeout
    while until.encode() not in received:
        message = await asyncio.wait_for(websocket.receive(), max(0.1, deadline - time.monotonic()))
        assert message.type == aiohttp.WSMsgType.BINARY, (message, received[-500:])
        received += message.data
    return received.decode(errors="replace")


async def test_the_page_is_served_and_fetches_nothing_off_site(client: TestClient) -> None:
    response = await client.get("/")
    assert response.status == 200
    page = await response.text()
    base = f"http://{client.host}:{client.port}"
    fetched = re.findall(r'(?:href|src)\s*=\s*"([^"]+)"|url\("([^"]+)"\)', page)
    fetched = [url for pair in fetched for url in pair if url]
    assert f"{base}/static/js/textual.js" in fetched
    assert f"{base}/static/fonts/RobotoMono-VariableFont_wght.ttf" in fetched
    assert all(url.startswith(base + "/") for url in fetched), fetched
    assert "googleapis" not in page and f'data-session-websocket-url="ws://{client.host}:{client.port}/ws"' in page
    for url in fetched:
        asset = await client.get(url[len(base):])
        assert asset.status == 200, url
        if url.endswith(".js") or url.endswith(".css"):   # the scripts and styles load nothing either
            assert not re.search(r"""(?:url\(|import\(|fetch\(|src=)["']?(?:https?:)?//""", await asset.text()), url


def test_the_template_loses_remote_assets_only() -> None:
    template = ('<head>\n<link rel="stylesheet" href="/static/a.css" />\n<link\n  rel="stylesheet"\n'
                '  href="https://fonts.googleapis.com/css?family=Roboto%20Mono"\n/>\n'
                '<script src="//cdn.example/x.js"></script>\n</head>')
    patched = offline_template(template)
    assert "googleapis" not in patched and "cdn.example" not in patched
    assert '<link rel="stylesheet" href="/static/a.css" />' in patched
    assert patched.count("@font-face") == 2 and patched.rstrip().endswith("</head>")


async def test_the_websocket_shows_the_run_and_takes_keys(client: TestClient, finished_run: Path) -> None:
    async with client.ws_connect("/ws?width=120&height=40") as websocket:
        assert finished_run.name in await terminal_output(websocket, until=finished_run.name)
        await websocket.send_json(["stdin", "3"])   # what xterm.js sends for the key 3: the Spectra pane
        assert "ranks of" in await terminal_output(websocket, until="ranks of")


async def test_a_viewer_that_dies_closes_its_tab(finished_run: Path, tmp_path: Path) -> None:
    """The page then says "Session ended" instead of waiting forever."""
    doomed = tmp_path / "doomed"
    shutil.copytree(finished_run, doomed)
    async with serving(doomed) as doomed_client:
        (doomed / "run.json").unlink()   # after the check, before the viewer reads it
        async with doomed_client.ws_connect("/ws") as websocket:
            message = await asyncio.wait_for(websocket.receive(), 30)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)


async def test_the_token_guards_page_assets_and_websocket(finished_run: Path) -> None:
    async with serving(finished_run, token=TOKEN) as client:
        assert (await client.get("/")).status == 403
        refused = await client.get("/?token=wrong")
        assert refused.status == 403 and "token" in await refused.text()
        page = await client.get(f"/?token={TOKEN}")
        assert page.status == 200
        cookie = page.cookies[f"nctui_serve_token_{client.port}"]
        assert cookie.value == TOKEN and cookie["httponly"] and cookie["samesite"] == "Strict"
        assert (await client.get("/static/js/textual.js")).status == 200   # the cookie carries the token
        async with client.ws_connect("/ws") as websocket:   # to the websocket too
            assert (await asyncio.wait_for(websocket.receive(), 60)).type == aiohttp.WSMsgType.BINARY
        client.session.cookie_jar.clear()
        assert (await client.get("/static/js/textual.js")).status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused_socket:
            await client.ws_connect("/ws")
        assert refused_socket.value.status == 403


async def test_loopback_refuses_other_host_names_and_sites(client: TestClient) -> None:
    """DNS rebinding (a page of evil.example resolving to 127.0.0.1) and cross-site websockets."""
    assert (await client.get("/", headers={"Host": "evil.example:8000"})).status == 403
    assert (await client.get("/", headers={"Host": f"localhost:{client.port}"})).status == 200
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", headers={"Origin": "http://evil.example"})
    assert refused.value.status == 403


async def test_public_answers_any_host_name(finished_run: Path) -> None:
    async with serving(finished_run, public=True) as client:
        response = await client.get("/", headers={"Host": "gpu-box.lab:8000"})
        assert response.status == 200
        assert 'data-session-websocket-url="ws://gpu-box.lab:8000/ws"' in await response.text()


# --- a real browser -----------------------------------------------------------------------------

@pytest.fixture
def served(finished_run: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`nctui serve` on the finished run, with a token from the environment; (its page address, its log).

    The server and its viewers run in their own process group, killed after the test.
    """
    port = free_port()
    log = open(tmp_path / "serve.log", "w+")
    process = subprocess.Popen(nctui_serve(str(finished_run), "--port", str(port)), stdout=log, stderr=log,
                               env={**os.environ, "NCTUI_SERVE_TOKEN": TOKEN}, start_new_session=True)
    url = f"http://127.0.0.1:{port}/?token={TOKEN}"
    try:
        deadline = time.monotonic() + 30
        while url not in (tmp_path / "serve.log").read_text():
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        yield url, tmp_path / "serve.log"
    finally:
        stop_process_group(process)
        log.close()


async def test_chromium_shows_the_monitor_and_switches_panes(served: tuple[str, Path], finished_run: Path) -> None:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    url, log = served
    async with chromium_page(chromium) as page:
        await page.call("Network.enable")
        await page.call("Page.enable")
        await page.call("Page.navigate", url=url)
        await page.wait_until(lambda: finished_run.name.encode() in page.websocket_bytes(), 60,
                              "the page's websocket never carried the run's name")
        await page.wait_until(lambda: page.evaluate("document.body.classList.contains('-first-byte')"), 10,
                              "the page never revealed the terminal")
        await asyncio.sleep(1)   # let xterm.js paint the last frame
        overview = await page.screenshot()
        assert overview.startswith(b"\x89PNG")
        assert await page.colour_fraction(overview, PANEL_BACKGROUND) > 0.3   # the panes, not the intro card

        await page.evaluate("document.querySelector('.xterm-helper-textarea').focus()")
        before = len(page.websocket_bytes())
        await page.press("3")
        await page.wait_until(lambda: b"ranks of" in page.websocket_bytes()[before:], 30,
                              "key 3 typed in the page did not bring the Spectra pane")
        await asyncio.sleep(1)
        spectra = await page.screenshot()
        assert spectra != overview
        assert await page.colour_fraction(spectra, PANEL_BACKGROUND) > 0.3
        requested = {event["params"]["request"]["url"] for event in page.events   # data: the screenshots counted
                     if event.get("method") == "Network.requestWillBeSent"}
        requested = {address for address in requested if not address.startswith("data:")}
        assert requested and all(address.startswith(url.split("?")[0]) for address in requested), requested
        sockets = [event["params"]["url"].split("?")[0] for event in page.events
                   if event.get("method") == "Network.webSocketCreated"]
        assert sockets == [url.split("?")[0].replace("http:", "ws:") + "ws"], sockets   # nothing from the internet
    requests = [line for line in log.read_text().splitlines() if " GET " in line]
    assert "nctui serve: 127.0.0.1 GET / 200" in requests
    assert not any(TOKEN in line for line in requests)   # the address printed at start holds it, no log line
