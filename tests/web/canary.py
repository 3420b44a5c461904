"""A local HTTP server that records every request: the "remote" host of hostile test mail.

An HTML mail whose script or remote image points here proves, by this server's empty log, that
the browser neither ran the script nor fetched the image; a request it does log after the user
clicks "Show images" proves the browser could reach it all along, so the empty log meant
something.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Canary"]

# The smallest valid PNG (1x1, transparent): an image that loads, so nothing retries.
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000b49444154789c6360000200000500017a5eab3f0000000049454e44ae426082"
)


class Canary:
    """``with Canary() as canary``: listens on 127.0.0.1 at ``canary.url``; ``canary.paths``
    lists the path of every request received, in order.
    """

    def __init__(self) -> None:
        self.paths: list[str] = []
        self._lock = threading.Lock()
        canary = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                with canary._lock:
                    canary.paths.append(self.path)
                body = PIXEL if self.path.endswith(".png") else b""
                self.send_response(200 if body else 204)
                if body:
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_HEAD = _record

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def seen(self) -> list[str]:
        with self._lock:
            return list(self.paths)

    def __enter__(self) -> Canary:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
