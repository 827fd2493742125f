"""A waitress server on a background thread, stoppable (used by the proxy and the scripted upstream)."""

from __future__ import annotations

import threading
from typing import Callable

from waitress.server import create_server


class ServerThread:
    def __init__(self, app: Callable, *, host: str, port: int, threads: int, name: str, **options) -> None:
        """Binds now (so `url` is known and a taken port fails here); serves after `start()`."""
        self._server = create_server(app, host=host, port=port, threads=threads, connection_limit=4096,
                                     asyncore_use_poll=True, **options)
        host = self._server.effective_host
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{self._server.effective_port}"
        self._thread = threading.Thread(target=self._server.run, name=name, daemon=True)
        self._stopped = False

    def start(self) -> "ServerThread":
        self._thread.start()
        return self

    def join(self, timeout_s: float | None = None) -> None:
        self._thread.join(timeout_s)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, grace_s: float = 5.0) -> None:
        """Let running requests finish (up to `grace_s`), then close every socket. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        server = self._server
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=grace_s)
        if self._thread.is_alive():
            # Sockets belong to the I/O loop's thread: close them there, then its loop ends.
            try:
                server.trigger.pull_trigger(lambda: _close_all(server))
            except OSError:
                # Waitress closes its trigger itself when poll reports the pipe hung up or invalid
                # (seen once in CI: EBADF here); its loop is then ending on its own.
                pass
            self._thread.join(timeout=grace_s)
        # Whatever is still open: nothing after a normal stop; without a trigger, the listening
        # socket and channels, and the loop then finds its map empty at its next poll timeout.
        _close_all(server)
        if self._thread.ident is not None:  # started (a stack that failed to start stops it unstarted)
            self._thread.join(timeout=grace_s)


def _close_all(server) -> None:
    for channel in list(server._map.values()):
        try:
            channel.close()
        except OSError:
            pass
