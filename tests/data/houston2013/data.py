#!/usr/bin/env python3
"""Generate a tiny Houston 2013 copy in two layouts (.mat and GeoTIFF).

The real scene is 349 x 1905 pixels; the fake one is 20 x 30 with the real
band count (144 HSI bands, 1 LiDAR band) and the real variable / file names.
Each class has its own spectrum and height so that a model can learn it.
"""

import shutil
from pathlib import Path

import numpy as np
import rasterio
import scipy.io
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parent
RNG = np.random.default_rng(0)
H, W, BANDS, CLASSES = 20, 30, 144, 15


def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    classes = (np.arange(H)[:, None] // 5 * 6 + np.arange(W)[None] // 5) % CLASSES
    spectra = RNG.uniform(200, 4000, (CLASSES, BANDS))
    hsi = spectra[classes] + RNG.normal(0, 20, (H, W, BANDS))
    lidar = (classes * 3.0 + 10 + RNG.normal(0, 0.1, (H, W))).astype(np.float64)
    labelled = RNG.random((H, W)) < 0.6
    train_pick = RNG.random((H, W)) < 0.35
    train = np.where(labelled & train_pick, classes + 1, 0).astype(np.uint8)
    test = np.where(labelled & ~train_pick, classes + 1, 0).astype(np.uint8)
    return hsi.astype(np.uint16), lidar, train, test


def main() -> None:
    for folder in ('mat', 'geotiff'):
        shutil.rmtree(ROOT / folder, ignore_errors=True)
        (ROOT / folder).mkdir()
    hsi, lidar, train, test = scene()
    mat = ROOT / 'mat'
    scipy.io.savemat(mat / 'HSI.mat', {'HSI': hsi}, do_compression=True)
    scipy.io.savemat(mat / 'LiDAR.mat', {'LiDAR': lidar}, do_compression=True)
    scipy.io.savemat(mat / 'TRLabel.mat', {'TRLabel': train}, do_compression=True)
    scipy.io.savemat(mat / 'TSLabel.mat', {'TSLabel': test}, do_compression=True)
    # The contest's GeoTIFFs: UTM 15N (EPSG:26915, NAD83), 2.5 m pixels.
    profile = {
        'driver': 'GTiff',
        'height': H,
        'width': W,
        'crs': 'EPSG:26915',
        'transform': from_origin(268_000.0, 3_290_000.0, 2.5, 2.5),
        'compress': 'deflate',
    }
    geo = ROOT / 'geotiff'
    parts = {
        '2013_IEEE_GRSS_DF_Contest_CASI.tif': hsi.transpose(2, 0, 1),
        '2013_IEEE_GRSS_DF_Contest_LiDAR.tif': lidar[None].astype(np.float32),
        'train_roi.tif': train[None],
        'val_roi.tif': test[None],
    }
    for name, array in parts.items():
        with rasterio.open(
            geo / name, 'w', count=array.shape[0], dtype=array.dtype, **profile
        ) as dst:
            dst.write(array)


if __name__ == '__main__':
    main()
