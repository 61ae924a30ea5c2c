"""Browser-test fixtures: Debian's Chromium driven by Playwright, and a loopback HTTP server.

Playwright's own browser download cannot run here (no internet), so the system
Chromium is used; when it or the built bundles are missing the tests FAIL, never skip.
"""

import http.server
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "webapp" / "static" / "dist"
ARTIFACTS = REPO / "tests" / "artifacts"
LOOPBACK = "127.0.0.1"
VIEWPORT = {"width": 1366, "height": 768}


@pytest.fixture(scope="session")
def browser():
    """A headless Debian Chromium; fails the test when Chromium or the bundles are missing."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's Chromium (apt-get install -y chromium). "
            "`playwright install` cannot download browsers on this network.",
            pytrace=False,
        )
    if not (DIST / "manifest.json").exists():
        pytest.fail(
            f"{DIST} has no built bundles: run `npm ci --no-audit --no-fund && npm run build`.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class RecordedPost:
    path: str
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, list[str]]:
        """The body parsed as application/x-www-form-urlencoded."""
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True)


@dataclass
class StaticServer:
    """Serves `root` over http on 127.0.0.1; `root/dist` points at webapp/static/dist."""

    root: Path
    base_url: str
    posts: list[RecordedPost] = field(default_factory=list)
    answers: dict[str, tuple[int, dict]] = field(default_factory=dict)

    def answer(self, path: str, status: int, body: dict):
        """Make POSTs to `path` answer `status` with JSON `body` (default: 200 {"ok": true})."""
        self.answers[path] = (status, body)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def write(self, name: str, text: str) -> str:
        """Write a file into the served folder and return its URL."""
        (self.root / name).write_text(text, encoding="utf-8")
        return self.url(name)


def _handler_for(server_state: StaticServer):
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(server_state.root), **kwargs)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            path = urlsplit(self.path).path
            server_state.posts.append(RecordedPost(path, dict(self.headers), body))
            status, answer = server_state.answers.get(path, (200, {"ok": True}))
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format, *args):
            pass  # keep pytest output quiet

    return Handler


@pytest.fixture
def static_server(tmp_path):
    """A loopback HTTP server on a random port serving tmp_path (GET) and recording POSTs."""
    (tmp_path / "dist").symlink_to(DIST, target_is_directory=True)
    (tmp_path / "favicon.ico").write_bytes(b"")  # Chromium asks for it on every page
    state = StaticServer(root=tmp_path, base_url="")
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), _handler_for(state))
    state.base_url = f"http://{LOOPBACK}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@dataclass
class WatchedPage:
    """A page plus what it logged and requested, for asserting a clean, offline load."""

    page: object
    console_errors: list[str] = field(default_factory=list)
    requested_urls: list[str] = field(default_factory=list)

    def offsite_requests(self) -> list[str]:
        return [
            url
            for url in self.requested_urls
            if urlsplit(url).scheme not in ("data", "blob") and urlsplit(url).hostname != LOOPBACK
        ]

    def assert_clean(self):
        assert self.console_errors == [], f"console errors: {self.console_errors}"
        assert self.offsite_requests() == [], f"requests left {LOOPBACK}: {self.offsite_requests()}"

    def screenshot(self, name: str):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _describe(message) -> str:
    url = message.location.get("url")
    return f"{message.text} ({url})" if url else message.text


@pytest.fixture
def watched_page(browser):
    """A fresh 1366x768 zh-CN page that records console errors, page errors and every request."""
    context = browser.new_context(viewport=VIEWPORT, locale="zh-CN")
    page = context.new_page()
    watched = WatchedPage(page)
    page.on(
        "console",
        lambda message: message.type == "error" and watched.console_errors.append(_describe(message)),
    )
    page.on("pageerror", lambda error: watched.console_errors.append(f"page error: {error}"))
    context.on("request", lambda request: watched.requested_urls.append(request.url))
    yield watched
    context.close()
