"""Real alert receivers on loopback for tests: an HTTP webhook and an SMTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from e2e_helpers import free_port


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict]]]:
    """(url, received JSON bodies): a Slack-style incoming webhook on 127.0.0.1."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def smtp_receiver() -> Iterator[tuple[int, list[Message]]]:
    """(port, received messages): aiosmtpd's SMTP server on 127.0.0.1."""
    from aiosmtpd.controller import Controller

    received: list[Message] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope) -> str:
            received.append(message_from_bytes(envelope.content))
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, received
    finally:
        controller.stop()
