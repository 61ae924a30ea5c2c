"""Real peers for the worker's deliveries: a counting HTTP server and an SMTP sink on 127.0.0.1."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class PlatformServer:
    """Stands in for the district platform: records each POST, answers `status` after `delay` s."""

    def __init__(self, status: int = 200, delay: float = 0.0):
        self.status = status
        self.delay = delay
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/sync"

    def _handler(self):
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if peer.delay:
                    time.sleep(peer.delay)
                with peer._lock:
                    peer.requests.append(
                        {
                            "key": self.headers.get("Idempotency-Key"),
                            "content_type": self.headers.get("Content-Type"),
                            "json": json.loads(body or b"null"),
                            "answered": peer.status,
                        }
                    )
                try:
                    self.send_response(peer.status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the worker was killed while we answered: the request still counts

            def log_message(self, *args):
                pass

        return Handler

    def keys(self) -> Counter:
        with self._lock:
            return Counter(r["key"] for r in self.requests)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()


class SmtpSink:
    """A minimal SMTP server that accepts every message and keeps it."""

    def __init__(self):
        self.messages: list[dict] = []
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def _handler(self):
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str):
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self):
                self.reply("220 sink ready")
                envelope = {"from": None, "to": []}
                while line := self.rfile.readline():
                    command = line.decode("utf-8", "replace").strip()
                    verb = command[:4].upper()
                    if verb in ("HELO", "EHLO"):
                        self.reply("250 sink")
                    elif verb == "MAIL":
                        envelope = {"from": command.split(":", 1)[1].strip(" <>"), "to": []}
                        self.reply("250 ok")
                    elif verb == "RCPT":
                        envelope["to"].append(command.split(":", 1)[1].strip(" <>"))
                        self.reply("250 ok")
                    elif verb == "DATA":
                        self.reply("354 go on")
                        data = b"".join(iter(self._data_line, None))
                        sink.messages.append({**envelope, "data": data.decode("utf-8", "replace")})
                        self.reply("250 queued")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("250 ok")

            def _data_line(self):
                line = self.rfile.readline()
                return None if line in (b".\r\n", b".\n", b"") else line

        return Handler

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
