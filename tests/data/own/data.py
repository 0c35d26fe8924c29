#!/usr/bin/env python3
"""Generate a tiny "own imagery" scene: two co-registered modalities and GIS labels.

The shape of a user's data (issue 12), kept small:

* ``rgb.tif``: 3 bands, uint8, 5 cm pixels, 512 x 512, UTM 33N (EPSG:32633)
  at northings just under 5 000 000 m (float32 resolves only 0.5 m there);
* ``ir.tif``: 1 band, uint8, 10 cm pixels, UTM 32N (EPSG:32632), covering
  the RGB scene with a margin: another CRS (rotated by the grid convergence
  of the neighbouring zone) and another resolution;
* ``labels.gpkg``: the objects in EPSG:4326 (a third CRS), column ``class``
  (``car`` / ``truck``) and ``kind`` (``polygon``: an irregular hexagon,
  ``rectangle``: a rotated rectangle), every object wholly inside the scene.

Objects are painted into both rasters (bright in the RGB, warm in the IR).
"""

import math
import os

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
import shapely
from rasterio.transform import from_origin

HERE = os.path.dirname(os.path.abspath(__file__))

RGB_CRS = 'EPSG:32633'
IR_CRS = 'EPSG:32632'
LABEL_CRS = 'EPSG:4326'
RGB_RES = 0.05
IR_RES = 0.1
SIZE = 512
#: Upper-left corner of the RGB scene (UTM 33N).
WEST, NORTH = 500_123.45, 4_999_987.65
GRID = 6  # objects on a jittered 6 x 6 grid


def rgb_transform() -> rasterio.Affine:
    """The RGB scene's affine transform."""
    return from_origin(WEST, NORTH, RGB_RES, RGB_RES)


def make_objects(rng: np.random.Generator) -> gpd.GeoDataFrame:
    """Rotated rectangles and irregular hexagons in the RGB CRS."""
    step = SIZE * RGB_RES / GRID
    records = []
    for i in range(GRID):
        for j in range(GRID):
            cx = WEST + (j + 0.5) * step + rng.uniform(-0.3, 0.3)
            cy = NORTH - (i + 0.5) * step + rng.uniform(-0.3, 0.3)
            truck = (i + j) % 3 == 0
            length = rng.uniform(1.4, 1.9) if truck else rng.uniform(0.8, 1.2)
            width = length * rng.uniform(0.4, 0.55)
            angle = rng.uniform(0, math.pi)
            if (i * GRID + j) % 2:
                half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float) * [
                    length / 2,
                    width / 2,
                ]
                kind = 'rectangle'
            else:
                t = np.arange(6) * math.pi / 3 + rng.uniform(-0.3, 0.3, 6)
                r = rng.uniform(0.75, 1.0, 6)
                half = np.stack(
                    [r * np.cos(t) * length / 2, r * np.sin(t) * width / 2], axis=1
                )
                kind = 'polygon'
            rot = np.array(
                [
                    [math.cos(angle), -math.sin(angle)],
                    [math.sin(angle), math.cos(angle)],
                ]
            )
            xy = half @ rot.T + [cx, cy]
            records.append(
                {
                    'class': 'truck' if truck else 'car',
                    'kind': kind,
                    'geometry': shapely.Polygon(xy),
                }
            )
    return gpd.GeoDataFrame(records, geometry='geometry', crs=RGB_CRS)


def write(path: str, array: np.ndarray, crs: str, transform: rasterio.Affine) -> None:
    """Write a small deflate-compressed GeoTIFF."""
    with rasterio.open(
        path,
        'w',
        driver='GTiff',
        width=array.shape[2],
        height=array.shape[1],
        count=array.shape[0],
        dtype=array.dtype,
        crs=crs,
        transform=transform,
        compress='deflate',
        predictor=2,
    ) as dst:
        dst.write(array)


def main() -> None:
    """Write rgb.tif, ir.tif and labels.gpkg next to this script."""
    rng = np.random.default_rng(12)
    objects = make_objects(rng)
    value = {'car': 1, 'truck': 2}
    shapes = [(g, value[c]) for g, c in zip(objects.geometry, objects['class'])]

    rows, cols = np.indices((SIZE, SIZE))
    burnt = rasterio.features.rasterize(
        shapes, out_shape=(SIZE, SIZE), transform=rgb_transform()
    )
    background = 60 + 20 * np.sin(rows / 37.0) + 15 * np.cos(cols / 23.0)
    rgb = np.stack([background, background + 10, background - 10])
    rgb[0][burnt == 1] = 220  # cars: red
    rgb[2][burnt == 2] = 230  # trucks: blue
    rgb[1][burnt > 0] = 40
    write(os.path.join(HERE, 'rgb.tif'), rgb.astype(np.uint8), RGB_CRS, rgb_transform())

    # IR grid: the RGB footprint in UTM 32N, with a 2 m margin.
    footprint = gpd.GeoSeries(
        [shapely.box(WEST, NORTH - SIZE * RGB_RES, WEST + SIZE * RGB_RES, NORTH)],
        crs=RGB_CRS,
    ).to_crs(IR_CRS)
    xmin, ymin, xmax, ymax = footprint.total_bounds
    west = math.floor(xmin) - 2.0
    north = math.ceil(ymax) + 2.0
    width = math.ceil((xmax + 2.0 - west) / IR_RES)
    height = math.ceil((north - (ymin - 2.0)) / IR_RES)
    ir_transform = from_origin(west, north, IR_RES, IR_RES)
    ir_objects = objects.to_crs(IR_CRS)
    warm = rasterio.features.rasterize(
        [(g, 1) for g in ir_objects.geometry],
        out_shape=(height, width),
        transform=ir_transform,
    )
    r, c = np.indices((height, width))
    ir = 90 + 10 * np.sin((r + c) / 29.0)
    ir[warm > 0] = 200
    write(os.path.join(HERE, 'ir.tif'), ir[None].astype(np.uint8), IR_CRS, ir_transform)

    labels = objects.to_crs(LABEL_CRS)
    path = os.path.join(HERE, 'labels.gpkg')
    if os.path.exists(path):
        os.remove(path)
    labels.to_file(path, driver='GPKG')


if __name__ == '__main__':
    main()
