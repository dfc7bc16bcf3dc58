"""A real redis-server for the tests: started on a free port in a directory of its own, with nothing
saved to disk, and stopped (or restarted on the same port) when a test says.

Readiness is polled (a PING, within a deadline), never waited for with a fixed sleep; a server that
exits at start fails with the last lines of its log. Only the standard library here: the conftest
imports this module even where redis-py is missing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, BinaryIO

MISSING = "redis-server is not installed: apt-get install redis-server"
START_DEADLINE = 20.0  # s: a hang guard for a loaded machine, not a speed target


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    """Whether a Redis server answers PING on ``port`` (NOAUTH counts: it answered)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class RedisServer:
    """``redis-server`` on 127.0.0.1; ``options``: more of its command-line options
    (``"--requirepass", "..."``). A context manager: started on entry, stopped on exit."""

    def __init__(self, directory: Path, *options: str) -> None:
        self.directory = directory
        self.options = options
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError(MISSING)
        self.directory.mkdir(parents=True, exist_ok=True)
        log_path = self.directory / "redis.log"
        self._log = open(log_path, "ab")  # closed in stop()
        self._process = subprocess.Popen(
            [executable, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--save", "", "--appendonly", "no", *self.options],
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_DEADLINE
        while not _answers(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = log_path.read_text(errors="replace").splitlines()[-5:]
                raise RuntimeError(f"redis-server did not start on port {self.port}: {' | '.join(tail)}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=START_DEADLINE)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        """Stop and start again on the same port: the data and the loaded scripts are gone."""
        self.stop()
        self.start()

    def client(self, **options: Any) -> Any:
        """A redis-py client of the server, to look at or damage what the store wrote."""
        import redis

        return redis.Redis.from_url(self.url, **options)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
