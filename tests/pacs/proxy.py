"""A small real HTTP proxy in front of Orthanc that breaks WADO-RS study retrievals the way
a network or a gateway does: it cuts the answer off mid-body, or answers a status itself.

A stand-in for a broken network, not for the PACS: every other request (QIDO-RS, STOW-RS)
and every retrieval it is not told to break reaches Orthanc unchanged.
"""

from __future__ import annotations

import re
import socket
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_STUDY = re.compile(r"^/dicom-web/studies/([0-9.]+)$")


class BreakingProxy:
    """``http://127.0.0.1:<port>/dicom-web`` forwarding to `upstream`, Orthanc's root URL.

    Attributes:
        cut: retrievals still to cut off after half their body (-1: every one).
        status: HTTP status answered instead of retrievals (0: none), for the studies in
            `only` (empty: every study).
        seen: retrievals asked, by study UID.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.cut, self.status, self.only = 0, 0, frozenset[str]()
        self.seen: list[str] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def dicomweb(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/dicom-web"

    def __enter__(self) -> BreakingProxy:
        self.thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _break(self, path: str) -> tuple[int, bool]:
        """(status to answer or 0, whether to cut) for one request."""
        match = _STUDY.match(path)
        if match is None:
            return 0, False
        with self.lock:
            self.seen.append(match.group(1))
            if self.status and (not self.only or match.group(1) in self.only):
                return self.status, False
            if self.cut:
                self.cut -= self.cut > 0
                return 0, True
        return 0, False

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_) -> None:
                pass

            def do_GET(self) -> None:
                self._forward(None)

            def do_POST(self) -> None:
                self._forward(self.rfile.read(int(self.headers.get("Content-Length", 0))))

            def _forward(self, data: bytes | None) -> None:
                status, cut = proxy._break(self.path)
                if status:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                keep = ("accept", "content-type")
                request = urllib.request.Request(
                    proxy.upstream + self.path, data=data, method=self.command,
                    headers={k: v for k, v in self.headers.items() if k.lower() in keep})
                try:
                    with urllib.request.urlopen(request, timeout=60) as answer:
                        code, headers, body = answer.status, answer.headers, answer.read()
                except urllib.error.HTTPError as err:
                    code, headers, body = err.code, err.headers, err.read()
                self.send_response(code)
                if headers.get("Content-Type"):
                    self.send_header("Content-Type", headers["Content-Type"])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if cut:  # what a dropped connection leaves: half the body, then nothing
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        return Handler
