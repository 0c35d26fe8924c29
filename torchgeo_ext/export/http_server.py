"""A local HTTP server with Range requests, to read rasters "remotely" offline.

It runs as its own process and imports nothing but the standard library.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = ['LocalRangeServer']

_RANGE = re.compile(r'^bytes=(\d*)-(\d*)$')


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single ``Range: bytes=a-b`` requests (what GDAL sends)."""

    server: _CountingServer

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing (tests and notebooks stay quiet)."""

    def end_headers(self) -> None:
        """Advertise range support on every answer."""
        self.send_header('Accept-Ranges', 'bytes')
        super().end_headers()

    def do_GET(self) -> None:
        """Serve a file, or the requested byte range of it (or the counters)."""
        if self.path in ('/__stats__', '/__reset__'):
            with self.server.lock:
                if self.path == '/__reset__':
                    self.server.bytes_sent = self.server.requests = 0
                body = json.dumps(
                    {
                        'bytes_sent': self.server.bytes_sent,
                        'requests': self.server.requests,
                    }
                ).encode()
            self.send_response(200)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.server.latency:
            time.sleep(self.server.latency)
        match = _RANGE.match(self.headers.get('Range', '').strip())
        path = Path(self.translate_path(self.path))
        if match is None or not path.is_file():
            self.server.count_request()
            return super().do_GET()  # whole file (counted in copyfile)
        size = path.stat().st_size
        first, last = match.groups()
        if first == '':  # suffix range: the last N bytes
            start, end = max(size - int(last or 0), 0), size - 1
        else:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
        if start >= size or end < start:
            self.server.count_request()
            self.send_response(416)
            self.send_header('Content-Range', f'bytes */{size}')
            self.end_headers()
            return
        self.send_response(206)
        self.send_header('Content-Type', self.guess_type(str(path)))
        self.send_header('Content-Range', f'bytes {start}-{end}/{size}')
        self.send_header('Content-Length', str(end - start + 1))
        self.end_headers()
        with path.open('rb') as f:
            f.seek(start)
            data = f.read(end - start + 1)
        self.wfile.write(data)
        self.server.count_request(len(data))

    def copyfile(self, source: Any, outputfile: Any) -> None:
        """Send a whole file, counting its bytes."""
        data = source.read()
        outputfile.write(data)
        self.server.count_request(len(data))


class _CountingServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: Any, handler: Any, latency: float) -> None:
        super().__init__(address, handler)
        self.latency = latency
        self.lock = threading.Lock()
        self.bytes_sent = 0
        self.requests = 0

    def count_request(self, nbytes: int = 0) -> None:
        with self.lock:
            self.bytes_sent += nbytes
            self.requests += 1


def _serve(argv: list[str]) -> None:
    """The server process: ``http_server.py ROOT LATENCY``; prints its port, serves."""
    root, latency = argv[0], float(argv[1])
    handler = partial(_RangeHandler, directory=root)
    server = _CountingServer(('127.0.0.1', 0), handler, latency)
    print(server.server_address[1], flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C reaches the whole group
        server.serve_forever()


class LocalRangeServer:
    """Serve a folder over HTTP on 127.0.0.1 (a free port) from a child process.

    A process, not a thread: a GDAL call that holds the GIL while it waits for
    the answer would otherwise wait for a server thread that cannot run.
    ``GET /__stats__`` answers the counters as JSON (not counted).

    Example::

        with LocalRangeServer('data/') as server:
            open_inputs(server.url('scene.tif'))  # http://127.0.0.1:PORT/scene.tif
            print(server.bytes_sent, server.requests)
    """

    def __init__(self, root: str | os.PathLike[str], latency: float = 0.0) -> None:
        """Initialise a new LocalRangeServer (it starts on ``__enter__``).

        Args:
            root: The folder served.
            latency: Seconds added before every answer (a slower network).
        """
        self.root = Path(root)
        self.latency = float(latency)
        self._process: subprocess.Popen[str] | None = None
        self._port = 0

    def __enter__(self) -> Self:
        """Start the server process and wait until it listens.

        Returns:
            This server.

        Raises:
            RuntimeError: If the server does not start.
        """
        root = os.fspath(self.root.absolute())
        self._process = subprocess.Popen(
            [sys.executable, __file__, root, str(self.latency)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()  # the port, once it listens
        if not line.strip().isdigit():
            self.__exit__(None, None, None)
            raise RuntimeError(f'the local HTTP server did not start ({line!r})')
        self._port = int(line)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server process."""
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._process = None

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT``.

        Raises:
            RuntimeError: If the server is not started.
        """
        if self._process is None:
            raise RuntimeError(
                'LocalRangeServer is not started: use it in a with block'
            )
        return f'http://127.0.0.1:{self._port}'

    def url(self, name: str | os.PathLike[str]) -> str:
        """The URL of a file under the served folder.

        Args:
            name: Path relative to the folder (or absolute, inside it).

        Returns:
            ``http://127.0.0.1:PORT/name``.
        """
        path = Path(name)
        if path.is_absolute():
            path = path.relative_to(self.root.absolute())
        return f'{self.base}/{path.as_posix()}'

    def _stats(self, action: str = 'stats') -> dict[str, int]:
        import json
        import urllib.request

        with urllib.request.urlopen(f'{self.base}/__{action}__', timeout=30) as answer:
            stats: dict[str, int] = json.loads(answer.read())
        return stats

    @property
    def bytes_sent(self) -> int:
        """Bytes of file content sent so far."""
        return self._stats()['bytes_sent']

    @property
    def requests(self) -> int:
        """Requests answered so far."""
        return self._stats()['requests']

    def reset_counts(self) -> None:
        """Set the byte and request counters back to zero."""
        self._stats('reset')


if __name__ == '__main__':
    _serve(sys.argv[1:])
