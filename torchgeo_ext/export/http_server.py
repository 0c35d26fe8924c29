"""A local HTTP server with Range requests, to read rasters "remotely" offline.

Tests, the remote-inputs tutorial and ``benchmarks/remote.py`` serve a folder
from 127.0.0.1 with it; it counts the bytes it sends and can add latency.
"""

from __future__ import annotations

import http.server
import os
import re
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
        """Serve a file, or the requested byte range of it."""
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
    latency = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = threading.Lock()
        self.bytes_sent = 0
        self.requests = 0

    def count_request(self, nbytes: int = 0) -> None:
        with self.lock:
            self.bytes_sent += nbytes
            self.requests += 1


class LocalRangeServer:
    """Serve a folder over HTTP on 127.0.0.1 (a free port) in a background thread.

    Example::

        with LocalRangeServer('data/') as server:
            open_inputs(server.url('scene.tif'))  # /vsicurl/http://127.0.0.1:PORT/scene.tif
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
        self._server: _CountingServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        """Start serving.

        Returns:
            This server.
        """
        handler = partial(_RangeHandler, directory=os.fspath(self.root))
        server = _CountingServer(('127.0.0.1', 0), handler)
        server.latency = self.latency
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name='local-range-server', daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop serving and join the thread."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def _running(self) -> _CountingServer:
        if self._server is None:
            raise RuntimeError(
                'LocalRangeServer is not started: use it in a with block'
            )
        return self._server

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host, port = self._running.server_address[:2]
        return f'http://{host!s}:{port}'

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

    @property
    def bytes_sent(self) -> int:
        """Bytes of file content sent so far."""
        return self._running.bytes_sent

    @property
    def requests(self) -> int:
        """Requests answered so far."""
        return self._running.requests

    def reset_counts(self) -> None:
        """Set the byte and request counters back to zero."""
        with self._running.lock:
            self._running.bytes_sent = 0
            self._running.requests = 0
