"""Share of training objects never seen whole: one region per cell vs merged regions.

A 400 x 400 px RGB orthophoto (5 cm, UTM 33N) with about 60 square-ish
objects of 20-40 px, labels in EPSG:4326, ``patch_size=128``: the scene of
issue 25. For each split setting it prints the share of objects in the
training area that no training patch holds whole, as the data module now
reports it (adjacent cells of one split merged into a region), and as it was
when every cell was its own region (objects not inside one training cell).

    python benchmarks/cut_objects.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from rasterio.transform import from_origin

from torchgeo_ext.datamodules.geo import GeoDetectionDataModule

SIZE, RES, PATCH, OBJECTS = 400, 0.05, 128, 60
WEST, NORTH = 500_000.0, 4_000_000.0


def make_scene(root: Path, seed: int) -> tuple[str, str]:
    """Write the orthophoto and its labels; return their paths."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (3, SIZE, SIZE), dtype=np.uint8)
    raster = root / 'ortho.tif'
    profile = {
        'driver': 'GTiff',
        'width': SIZE,
        'height': SIZE,
        'count': 3,
        'dtype': 'uint8',
        'crs': 'EPSG:32633',
        'transform': from_origin(WEST, NORTH, RES, RES),
    }
    with rasterio.open(raster, 'w', **profile) as dst:
        dst.write(image)
    boxes = []
    for _ in range(OBJECTS):
        w, h = rng.uniform(20, 40, 2)
        x, y = rng.uniform(0, SIZE - w), rng.uniform(0, SIZE - h)
        boxes.append(
            shapely.box(
                WEST + x * RES,
                NORTH - (y + h) * RES,
                WEST + (x + w) * RES,
                NORTH - y * RES,
            )
        )
    labels = root / 'crowns.gpkg'
    frame = gpd.GeoDataFrame({'class': ['crown'] * OBJECTS}, geometry=boxes, crs=32633)
    frame.to_crs(4326).to_file(labels)
    return str(raster), str(labels)


def per_cell_share(dm: GeoDetectionDataModule) -> float:
    """The share before: objects in the training area not inside one training cell."""
    cells = dm.split_cells['train']
    area = shapely.union_all(cells)
    objects = [g for g in dm.labels.objects.geometry if g.intersects(area)]
    cut = [g for g in objects if not any(g.within(c.buffer(1e-6)) for c in cells)]
    return len(cut) / len(objects)


def main() -> None:
    """Print the shares, averaged over seeds of the scene and of the split."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--seeds', type=int, default=5)
    args = parser.parse_args()
    print('| val / test split | cell side | per cell (before) | merged regions (now) |')
    print('|---|---|---|---|')
    for split in (0.0, 0.1, 0.2):
        before, now, sides = [], [], set()
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as tmp:
                raster, labels = make_scene(Path(tmp), seed)
                with warnings.catch_warnings():
                    warnings.simplefilter('ignore')
                    dm = GeoDetectionDataModule(
                        [raster],
                        labels,
                        patch_size=PATCH,
                        val_split=split,
                        test_split=split,
                        seed=seed,
                    )
                    dm.setup('fit')
                before.append(per_cell_share(dm))
                now.append(dm.never_whole[1])
                sides.add(dm.grid_cell_size)
        print(
            f'| {split:.1f} / {split:.1f} | {sorted(sides)} px | {np.mean(before):.0%} '
            f'| {np.mean(now):.0%} |'
        )


if __name__ == '__main__':
    main()
