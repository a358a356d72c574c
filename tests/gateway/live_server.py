"""A real uvicorn server in a thread of the test process, for what Starlette's TestClient cannot show.

The TestClient hands a request's whole body to the app at once, never blocks a
websocket send and writes no access log; these tests need a socket: bodies that arrive
in chunks, a browser that stops reading, and uvicorn's own log lines. The server
listens on a free port of 127.0.0.1, runs the app's lifespan like ``cadenza gateway``
and stops when the ``with`` block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette

from gateway.state import Gateway


@dataclass
class Running:
    server: uvicorn.Server
    port: int
    gateway: Gateway

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def loop(self) -> asyncio.AbstractEventLoop:
        """The server's event loop (the one the gateway's heartbeat task runs on)."""
        return self.gateway.tasks[0].get_loop()

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the server's loop (the hub is not thread-safe) and return its result."""

        async def run() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop()).result(timeout=10)

    def asgi_tasks(self) -> int:
        """Requests and websockets whose ASGI app (the gateway) has not returned yet."""
        return len(self.server.server_state.tasks)


@contextlib.contextmanager
def serve(app: Starlette, **config: Any) -> Iterator[Running]:
    """Serve ``app`` with uvicorn (``config``: more ``uvicorn.Config`` options) until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options: dict[str, Any] = {
        "log_config": None,
        "loop": "asyncio",
        "ws_ping_interval": None,
        "timeout_graceful_shutdown": 3,
        **config,
    }
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Running(server, port, app.state.gateway)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
