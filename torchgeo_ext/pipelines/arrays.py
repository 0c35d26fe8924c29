"""Tiled prediction on in-memory xarray DataArrays, for notebooks."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rioxarray  # registers the .rio accessor
import xarray as xr
from torch import Tensor

from ..errors import InvalidInputError
from .tiling import predict_raster

__all__ = ['predict_array']


def predict_array(
    model: Callable[[Tensor], Tensor], da: xr.DataArray, **kwargs: Any
) -> xr.DataArray:
    """Run a dense model over a georeferenced DataArray, tile by tile.

    Args:
        model: Callable mapping a float32 batch (B, C, T, T) to (B, K, T, T), as
            for :func:`~torchgeo_ext.pipelines.tiling.predict_raster`.
        da: Image with dimensions ``(band, y, x)`` (or ``(y, x)`` for one band), a
            CRS (``da.rio.crs``) and a transform (``da.rio.transform()``); its
            ``da.rio.nodata`` pixels become output nodata.
        **kwargs: Options of ``predict_raster`` (``tile_size``, ``overlap``,
            ``batch_size``, ``blend``, ``output_kind``, ``dtype``, ``nodata``,
            ``class_names``, ``band_names``, ``device``, ``precision``,
            ``readers``, ``progress``).

    Returns:
        The prediction (band, y, x), with ``da``'s CRS, transform and ``x``/``y``
        coordinates, the output nodata as ``rio.nodata``, band names as the
        ``band`` coordinate and ``class_names`` (if given) in ``attrs``.

    Raises:
        InvalidInputError: If ``da`` has no CRS or the wrong dimensions.
    """
    if da.ndim == 2:
        da = da.expand_dims('band')
    name = str(da.name or 'DataArray')
    if da.ndim != 3 or tuple(da.dims[1:]) != ('y', 'x'):
        raise InvalidInputError(name, f'expected dims (band, y, x), got {da.dims}')
    if da.rio.crs is None:
        raise InvalidInputError(name, 'has no CRS: set one with da.rio.write_crs(...)')
    kwargs.setdefault('progress', False)
    with tempfile.TemporaryDirectory(prefix='torchgeo-ext-') as folder:
        source = Path(folder) / 'input.tif'
        target = Path(folder) / 'prediction.tif'
        image = da.astype('float32') if da.dtype.kind == 'f' else da
        image.rio.to_raster(source, tiled=True)
        predict_raster(model, source, target, cog=False, **kwargs)
        opened = rioxarray.open_rasterio(target, mask_and_scale=False)
        assert isinstance(opened, xr.DataArray)
        with opened:
            result = opened.load()
    # Exactly the input's grid (the GeoTIFF round trip may reformat coordinates).
    result = result.assign_coords(x=da.x, y=da.y)
    descriptions = result.attrs.pop('long_name', None)
    if isinstance(descriptions, tuple | list):
        result = result.assign_coords(band=list(descriptions))
    if kwargs.get('class_names') is not None:
        result.attrs['class_names'] = list(kwargs['class_names'])
    return result.rio.write_crs(da.rio.crs).rio.write_transform(da.rio.transform())
