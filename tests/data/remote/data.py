#!/usr/bin/env python3
"""Generate fake STAC items whose assets are Cloud-Optimized GeoTIFFs.

The layout of a STAC catalogue of Sentinel-2-style scenes (issue 27), made
from the own-imagery fake data (``tests/data/own``):

* ``scene_a/``: ``B02.tif``, ``B03.tif``, ``B04.tif`` (blue, green, red: the
  bands of ``own/rgb.tif``, 512 x 512, 5 cm, EPSG:32633) and ``B08.tif``
  (``nir``: ``own/ir.tif``, 10 cm, EPSG:32632: another resolution and CRS),
  each a COG with 256 x 256 blocks, and ``item.json``, a STAC Item (eo:bands
  common names, relative hrefs);
* ``scene_b/``: the top-left 256 x 256 of the same bands, ``item.json``
  (its ``nir`` asset is ``../scene_a/B08.tif``);
* ``items.json``: an ItemCollection of both items (hrefs relative to it).
"""

import json
import os
import shutil
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.io import MemoryFile
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

HERE = os.path.dirname(os.path.abspath(__file__))
OWN = os.path.join(HERE, '..', 'own')
BANDS = {'B02': ('blue', 3), 'B03': ('green', 2), 'B04': ('red', 1)}
DATETIME = '2024-06-01T10:00:00Z'


def write_cog(path: str, data: np.ndarray, profile: dict[str, Any]) -> None:
    """Write a (C, H, W) array as a COG with 256 x 256 blocks."""
    profile = {**profile, 'driver': 'GTiff', 'count': data.shape[0]}
    profile.pop('blockxsize', None), profile.pop('blockysize', None)
    profile.pop('tiled', None)
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data)
        with mem.open() as src:
            rasterio.shutil.copy(
                src,
                path,
                driver='COG',
                blocksize=256,
                compress='DEFLATE',
                overviews='NONE',
            )


def bbox_of(path: str) -> tuple[list[float], dict[str, Any]]:
    """WGS 84 bbox and footprint of a raster."""
    from rasterio.warp import transform_bounds

    with rasterio.open(path) as src:
        west, south, east, north = transform_bounds(src.crs, 'EPSG:4326', *src.bounds)
    box = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return [west, south, east, north], {'type': 'Polygon', 'coordinates': [box]}


def item(item_id: str, folder: str, hrefs: dict[str, str]) -> dict[str, Any]:
    """A STAC Item dict with eo:bands common names; hrefs relative to *folder*."""
    bbox, geometry = bbox_of(os.path.join(folder, hrefs['B04']))
    assets = {}
    for key, href in hrefs.items():
        name = BANDS[key][0] if key in BANDS else 'nir'
        assets[key] = {
            'href': href,
            'type': 'image/tiff; application=geotiff; profile=cloud-optimized',
            'roles': ['data'],
            'eo:bands': [{'name': key, 'common_name': name}],
        }
    return {
        'type': 'Feature',
        'stac_version': '1.0.0',
        'stac_extensions': ['https://stac-extensions.github.io/eo/v1.1.0/schema.json'],
        'id': item_id,
        'bbox': bbox,
        'geometry': geometry,
        'properties': {'datetime': DATETIME},
        'links': [],
        'assets': assets,
    }


def main() -> None:
    """Write the scenes, items and the collection."""
    for name in ('scene_a', 'scene_b'):
        shutil.rmtree(os.path.join(HERE, name), ignore_errors=True)
        os.makedirs(os.path.join(HERE, name))
    with rasterio.open(os.path.join(OWN, 'rgb.tif')) as src:
        rgb, profile = src.read(), src.profile
    with rasterio.open(os.path.join(OWN, 'ir.tif')) as src:
        ir, ir_profile = src.read(), src.profile
    crop = Window(0, 0, 256, 256)
    crop_profile = {
        **profile,
        'width': 256,
        'height': 256,
        'transform': window_transform(crop, profile['transform']),
    }
    for key, (_, band) in BANDS.items():
        one = rgb[band - 1 : band]
        write_cog(os.path.join(HERE, 'scene_a', f'{key}.tif'), one, profile)
        write_cog(
            os.path.join(HERE, 'scene_b', f'{key}.tif'),
            one[:, :256, :256],
            crop_profile,
        )
    write_cog(os.path.join(HERE, 'scene_a', 'B08.tif'), ir, ir_profile)

    keys = [*BANDS, 'B08']
    items = {
        'scene_a': item(
            'scene_a', os.path.join(HERE, 'scene_a'), {k: f'./{k}.tif' for k in keys}
        ),
        'scene_b': item(
            'scene_b',
            os.path.join(HERE, 'scene_b'),
            {**{k: f'./{k}.tif' for k in BANDS}, 'B08': '../scene_a/B08.tif'},
        ),
    }
    features = []
    for name, data in items.items():
        with open(os.path.join(HERE, name, 'item.json'), 'w') as f:
            json.dump(data, f, indent=1)
        rebased = json.loads(json.dumps(data))
        for asset in rebased['assets'].values():
            asset['href'] = os.path.normpath(os.path.join(name, asset['href']))
        features.append(rebased)
    with open(os.path.join(HERE, 'items.json'), 'w') as f:
        json.dump({'type': 'FeatureCollection', 'features': features}, f, indent=1)


if __name__ == '__main__':
    main()
