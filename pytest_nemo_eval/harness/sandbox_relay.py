"""A byte relay that lets a harness in its own network namespace reach exactly the TCP endpoints it is given.

The sandboxed harness (harness_sandbox.py) has no network but a loopback of its own. Inside, this
file runs as the sandbox's first process: for each endpoint (the model's proxy route and, for a
judged benchmark, the judge's) it listens on 127.0.0.1:<port> (the port the harness's URL names)
and forwards every connection to that endpoint's Unix socket, bound in from the host; then it runs
the harness command and exits with its status. On the host, one `HostRelay` per endpoint accepts
on its Unix socket and connects to the real endpoint. Nothing else of the host's network is
reachable from inside.

Standard library only: inside, it runs under the harness venv's interpreter.
"""

from __future__ import annotations

import functools
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable

CHUNK = 1 << 16


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    try:
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _bridge(client: socket.socket, connect: Callable[[], socket.socket]) -> None:
    try:
        upstream = connect()
    except OSError:
        client.close()
        return
    other = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    other.start()
    _pump(client, upstream)
    other.join()
    client.close()
    upstream.close()


def serve(listener: socket.socket, connect: Callable[[], socket.socket]) -> None:
    """Accept until `listener` is shut down; each connection is bridged to a fresh `connect()`."""
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_bridge, args=(client, connect), daemon=True).start()


class HostRelay:
    """Host side: a Unix socket at `socket_path` whose connections go to `host:port`."""

    def __init__(self, socket_path: str, host: str, port: int):
        self.socket_path, self.host, self.port = socket_path, host, port
        self._listener: socket.socket | None = None

    def __enter__(self) -> HostRelay:
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.socket_path)
        self._listener.listen(64)
        threading.Thread(target=serve, args=(self._listener, self._connect), daemon=True).start()
        return self

    def _connect(self) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=None)

    def __exit__(self, *exc) -> None:
        assert self._listener is not None
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        except OSError:
            pass
        self._listener.close()


def _unix(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    return sock


def main(argv: list[str]) -> int:
    """Inside the sandbox: `sandbox_relay.py PORT=SOCKET [PORT=SOCKET ...] -- COMMAND...`."""
    separator = argv.index("--") if "--" in argv else len(argv)
    specs, command = argv[:separator], argv[separator + 1:]
    pairs = [spec.partition("=") for spec in specs]
    if not specs or not command or any(not port.isdigit() or not path for port, _, path in pairs):
        print("usage: sandbox_relay.py PORT=SOCKET [PORT=SOCKET ...] -- COMMAND...", file=sys.stderr)
        return 2
    for port, _, socket_path in pairs:
        listener = socket.create_server(("127.0.0.1", int(port)))
        connect = functools.partial(_unix, socket_path)
        threading.Thread(target=serve, args=(listener, connect), daemon=True).start()
    try:
        process = subprocess.Popen(command)
    except OSError as exc:
        print(f"cannot start {command[0]!r} in the sandbox: {exc}", file=sys.stderr)
        return 127
    signal.signal(signal.SIGTERM, lambda *_: process.terminate())
    return process.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
