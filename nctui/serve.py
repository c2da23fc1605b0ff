"""`nctui serve`: the run viewer in a web browser, one `nctui open` process per browser tab.

textual-serve (the optional extra `[serve]`) runs a fresh viewer process for each websocket
and relays its terminal to xterm.js in the page. Never a trainer: a tab is a reader of the run
directory, so closing it stops nothing. This module adds what textual-serve lacks: loopback by
default, an optional token, a Host and Origin check, and a page that fetches nothing from the
internet (its template links Google Fonts; the package ships the same Roboto Mono files).

`python -m nctui.serve PATH` is the viewer process itself (see `view`).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import re
import shlex
import socket
import sys
import urllib.parse
from pathlib import Path
from typing import Any, Awaitable, Callable

import click

from nctui.records import EXIT_OK, EXIT_USAGE

INSTALL_HINT = 'pip install -e ".[serve]"'
TOKEN_PARAM = "token"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
VIEWER_QUIT_SECONDS = 5   # a viewer told to quit (its tab closed) gets this long before it is killed
# the Google Fonts stylesheet (or any other off-site <link>/<script>) in textual-serve's template
_REMOTE_ASSET = re.compile(
    r"<link\b[^>]*\bhref\s*=\s*\"(?:https?:)?//[^\"]*\"[^>]*>|<script\b[^>]*\bsrc\s*=\s*\"(?:https?:)?//[^\"]*\"[^>]*>\s*</script>",
    re.IGNORECASE | re.DOTALL)
# the same family from the files textual-serve ships under static/fonts/
_LOCAL_FONTS = """
    <link rel="preload" as="font" type="font/ttf" crossorigin
          href="{{ config.static.url }}fonts/RobotoMono-VariableFont_wght.ttf" />
    <style>
      @font-face {
        font-family: "Roboto Mono"; font-style: normal; font-weight: 100 700;
        src: url("{{ config.static.url }}fonts/RobotoMono-VariableFont_wght.ttf") format("truetype");
      }
      @font-face {
        font-family: "Roboto Mono"; font-style: italic; font-weight: 100 700;
        src: url("{{ config.static.url }}fonts/RobotoMono-Italic-VariableFont_wght.ttf") format("truetype");
      }
    </style>
"""


class ServeError(Exception):
    """Bad input to `nctui serve`; the message is one line for the user."""


def check_target(path: str | Path) -> Path:
    """The absolute run or sweep directory at `path`; ServeError naming what is wrong.

    Checked before serving: a bad path would otherwise surface only as a dead browser tab.
    """
    from nctui.store.rundir import RUN_JSON, RunDirError, read_run_json
    from nctui.store.sweepdir import SWEEP_JSON, SweepDirError, read_manifest

    target = Path(path).expanduser().resolve()
    if not target.is_dir():
        raise ServeError(f"{path}: no such directory (give a run directory or a sweep directory)")
    try:
        if (target / RUN_JSON).exists():
            read_run_json(target)
        elif (target / SWEEP_JSON).exists():
            read_manifest(target)
        else:
            raise ServeError(f"{path}: not a run or sweep directory (it has no {RUN_JSON} or {SWEEP_JSON})")
    except (RunDirError, SweepDirError) as err:
        raise ServeError(str(err)) from None
    return target


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def viewer_command(target: Path) -> str:
    """The shell command textual-serve starts for each browser tab: this interpreter's viewer,
    exec'd so that the process textual-serve holds (and may kill) is the viewer, not a shell."""
    return "exec " + shlex.join([sys.executable, "-m", "nctui.serve", str(target)])


def page_url(host: str, port: int, token: str | None) -> str:
    """The address to open, with the token when one is required."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    shown = f"[{host}]" if ":" in host else host
    query = f"/?{urllib.parse.urlencode({TOKEN_PARAM: token})}" if token else "/"
    return f"http://{shown}:{port}{query}"


def offline_template(template: str) -> str:
    """textual-serve's page template without off-site assets, its font served locally."""
    return _REMOTE_ASSET.sub("", template).replace("</head>", _LOCAL_FONTS + "  </head>", 1)


def make_server(target: Path, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
                public: bool = False) -> Any:
    """A textual-serve Server for the viewer of `target`; ImportError without textual-serve.

    `public` lifts the Host check that, on loopback, refuses pages reached under another name
    (DNS rebinding); `token`, if given, must come as ?token= on the page (it is then kept in a
    cookie for the websocket and the static files).
    """
    import aiohttp_jinja2
    import jinja2
    import textual_serve
    from aiohttp import web
    from aiohttp.abc import AbstractAccessLogger
    from textual_serve.server import Server, to_int

    template_file = Path(textual_serve.__file__).parent / "templates" / "app_index.html"
    page_template = offline_template(template_file.read_text(encoding="utf-8"))
    cookie_name = f"nctui_serve_token_{port}"   # cookies are per host, not per port
    viewers: dict[web.WebSocketResponse, Any] = {}   # each tab's websocket -> its viewer (an AppService)
    pending: set[asyncio.Future] = set()   # websocket handlers and viewer reapings not yet done

    class AccessLog(AbstractAccessLogger):
        """One line a request, without the query string: the token stays out of logs."""

        def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
            self.logger.info("%s %s %s %s", request.remote, request.method, request.path, response.status)

    class NctuiServer(Server):
        """textual-serve's server behind nctui's guard, with the offline page."""

        async def _make_app(self) -> web.Application:
            app = await super()._make_app()
            app.middlewares.append(guard)
            aiohttp_jinja2.setup(app, loader=jinja2.DictLoader({"app_index.html": page_template}))
            return app

        async def handle_index(self, request: web.Request) -> web.Response:
            """The page, with its static and websocket addresses as the browser reached it."""
            base = f"{request.scheme}://{request.host}"
            websocket = ("wss" if request.scheme == "https" else "ws") + f"://{request.host}/ws"
            context = {
                "font_size": to_int(request.query.get("fontsize", "16"), 16),
                "app_websocket_url": websocket,
                "config": {"static": {"url": f"{base}/static/"}},
                "application": {"name": self.title},
            }
            response = aiohttp_jinja2.render_template("app_index.html", request, context)
            if token:
                response.set_cookie(cookie_name, token, httponly=True, samesite="Strict", path="/")
            return response

        def initialize_logging(self) -> None:
            """Plain lines on stderr (textual-serve's rich handler would print locals with tracebacks)."""
            logging.basicConfig(level=logging.INFO, format="nctui serve: %(message)s", stream=sys.stderr)

        def serve(self, debug: bool = False) -> None:
            """Listen until Ctrl+C or SIGTERM; the address is printed once the port is bound."""
            self.initialize_logging()
            ready = f"nctui: serving {target.name} at {page_url(host, port, token)} (Ctrl+C to stop)"
            web.run_app(self._make_app(), host=self.host, port=self.port, handle_signals=True,
                        access_log_class=AccessLog, print=lambda *_: click.echo(ready, err=True))

        async def on_startup(self, app: web.Application) -> None:
            """Nothing: textual-serve's banner would claim the address before the port is bound."""

        async def on_shutdown(self, app: web.Application) -> None:
            """Close every tab's websocket (its viewer is told to quit: Ctrl+C does not wait on
            open tabs) and wait until every viewer is reaped."""
            await asyncio.gather(*(websocket.close() for websocket in list(viewers)))
            deadline = asyncio.get_running_loop().time() + 2 * VIEWER_QUIT_SECONDS
            while pending and asyncio.get_running_loop().time() < deadline:   # a tab's end adds its reaping
                await asyncio.wait(set(pending), timeout=deadline - asyncio.get_running_loop().time())

        async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
            """textual-serve's tab, then the viewer reaped (killed if it has not quit within
            VIEWER_QUIT_SECONDS): no viewer outlives its tab."""
            tab = asyncio.current_task()
            pending.add(tab)
            try:
                websocket = await super().handle_websocket(request)
            finally:
                pending.discard(tab)
            app_service = viewers.pop(websocket, None)
            if app_service is not None and app_service._process is not None:
                reaping = asyncio.ensure_future(_reap(app_service._process))
                pending.add(reaping)
                reaping.add_done_callback(pending.discard)
                await asyncio.shield(reaping)   # a dropped connection cancels this handler, not the reaping
            return websocket

        async def _process_messages(self, websocket: web.WebSocketResponse, app_service: Any) -> None:
            """Relay the tab's input until it leaves or its viewer ends (then close the tab's
            websocket, so that the page says the session ended instead of waiting forever)."""
            viewers[websocket] = app_service
            relay = asyncio.ensure_future(super()._process_messages(websocket, app_service))
            await asyncio.wait({relay, app_service._task}, return_when=asyncio.FIRST_COMPLETED)
            if not relay.done():
                await websocket.close()
            await relay

    @web.middleware
    async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        if not public and not is_loopback((request.url.host or "").strip("[]")):
            raise web.HTTPForbidden(text="nctui serve: unexpected Host header (this server answers "
                                         "only to localhost; restart it with --public to serve other names)\n")
        if token:
            given = request.query.get(TOKEN_PARAM) or request.cookies.get(cookie_name) or ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise web.HTTPForbidden(text="nctui serve: this server needs its token: open the address "
                                             "`nctui serve` printed (with ?token=...)\n")
        origin = request.headers.get("Origin")
        if request.path == "/ws" and origin and origin.split("://", 1)[-1] != request.host:
            raise web.HTTPForbidden(text="nctui serve: websocket from another site refused\n")
        return await handler(request)

    return NctuiServer(viewer_command(target), host=host, port=port, title=f"nctui {target.name}")


async def _reap(viewer: asyncio.subprocess.Process) -> None:
    """Wait for a viewer told to quit; kill it if it has not within VIEWER_QUIT_SECONDS."""
    try:
        await asyncio.wait_for(viewer.wait(), VIEWER_QUIT_SECONDS)
    except asyncio.TimeoutError:
        viewer.kill()
        await viewer.wait()


def _fail(message: str) -> click.exceptions.Exit:
    click.echo(f"nctui: error: {message}", err=True)
    return click.exceptions.Exit(EXIT_USAGE)


@click.command("serve")
@click.argument("target", metavar="RUN_OR_SWEEP", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs --public.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--public", is_flag=True,
              help="Allow a non-loopback --host. textual-serve has no authentication: use --token.")
@click.option("--token", envvar="NCTUI_SERVE_TOKEN", default=None, metavar="TOKEN",
              help="Require ?token=TOKEN in the page's address (or set NCTUI_SERVE_TOKEN, "
                   "which other users cannot see in the process list).")
def serve(target: str, host: str, port: int, public: bool, token: str | None) -> None:
    """Show a run (or a sweep) in a web browser: the `nctui open` monitor, one viewer per tab.

    Each browser tab starts its own viewer process reading RUN_OR_SWEEP (a live run is
    followed); nothing is trained here. Listens on 127.0.0.1 unless --public; the page needs
    nothing from the internet. Needs the optional extra: pip install -e ".[serve]".
    """
    try:
        import textual_serve  # noqa: F401 - only to say what to install
    except ImportError:
        raise _fail(f"nctui serve needs textual-serve: {INSTALL_HINT}") from None
    try:
        run_or_sweep = check_target(target)
    except ServeError as err:
        raise _fail(str(err)) from None
    if not public and not is_loopback(host):
        raise _fail(f"--host {host} would serve to other machines: add --public to mean it "
                    "(textual-serve has no authentication; add --token too)")
    if token is not None and not token.strip():
        raise _fail("--token is empty")
    if public:
        click.echo("nctui: warning: textual-serve has no authentication: anyone who can reach "
                   f"{host}:{port} " + ("and has the token " if token else "") + "can view this run"
                   + ("" if token else " (add --token)"), err=True)
    server = make_server(run_or_sweep, host=host, port=port, token=token, public=public)
    try:
        server.serve()
    except OSError as err:
        raise _fail(f"cannot listen on {host}:{port}: {err.strerror or err} (try another --port)") from None
    raise click.exceptions.Exit(EXIT_OK)


def view(target: Path) -> int:
    """The viewer process for one browser tab: `nctui open`'s monitor on `target`.

    Not the `open` command itself: that refuses to start without a terminal on stdout, and
    here stdout is textual-serve's pipe (the browser is the terminal).
    """
    from nctui.store.rundir import RunDirError
    from nctui.store.sweepdir import SweepDirError
    from nctui.viewer import open_viewer

    try:
        app, _warnings = open_viewer([target])   # a run, or compare mode for a sweep; the app shows the warnings
    except (RunDirError, SweepDirError) as err:
        click.echo(f"nctui: error: {err}", err=True)
        return EXIT_USAGE
    code = app.run()
    return code if code is not None else EXIT_OK


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.executable} -m nctui.serve RUN_DIR (started by `nctui serve`)")
    sys.exit(view(Path(sys.argv[1])))
