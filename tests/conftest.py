"""Shared pytest configuration."""

import contextlib
import os
from collections.abc import Callable, Iterator

import matplotlib
import pytest
import torch

from torchgeo_ext.export.http_server import LocalRangeServer

# Plots in tests render off-screen.
matplotlib.use('Agg')

# The models under test are small: intra-op threads only add overhead, and
# under pytest-xdist (one process per core) or on a shared CPU they oversubscribe
# the cores and make small ops many times slower.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _restore_gdal_readdir() -> Iterator[None]:
    """Undo TorchGeo's CLI setting GDAL_DISABLE_READDIR_ON_OPEN process-wide.

    ``torchgeo.main`` sets it to ``EMPTY_DIR`` in ``os.environ``; a later test in the
    same worker would then fail to find ENVI sidecar headers with plain rasterio.
    """
    before = os.environ.get('GDAL_DISABLE_READDIR_ON_OPEN')
    yield
    if before is None:
        os.environ.pop('GDAL_DISABLE_READDIR_ON_OPEN', None)
    else:
        os.environ['GDAL_DISABLE_READDIR_ON_OPEN'] = before


@pytest.fixture
def serve() -> Iterator[Callable[[str | os.PathLike[str]], LocalRangeServer]]:
    """Serve folders over HTTP with Range requests from 127.0.0.1 (stopped after the test).

    ``serve(folder)`` returns the running
    :class:`~torchgeo_ext.export.http_server.LocalRangeServer`; its
    ``bytes_sent`` counts what GDAL downloaded.
    """
    with contextlib.ExitStack() as stack:

        def start(folder: str | os.PathLike[str]) -> LocalRangeServer:
            return stack.enter_context(LocalRangeServer(folder))

        yield start
