#!/usr/bin/env python3
"""Generate a tiny MUUFL Gulfport copy (.mat v5 and a MATLAB v7.3 / HDF5 copy).

The real scene is 325 x 220 pixels; the fake one is 30 x 20 with the real
band counts (64 HSI bands, 2 LiDAR rasters) and M3amba's variable names
(``HSI``, ``lidar``, ``trainlabels``, ``testlabels``). ``v73/`` holds the same
arrays as MATLAB v7.3 writes them (HDF5, axes reversed).
"""

import shutil
from pathlib import Path

import h5py
import numpy as np
import scipy.io

ROOT = Path(__file__).resolve().parent
RNG = np.random.default_rng(2)
H, W, BANDS, CLASSES = 30, 20, 64, 11


def main() -> None:
    for folder in ('mat', 'v73'):
        shutil.rmtree(ROOT / folder, ignore_errors=True)
        (ROOT / folder).mkdir()
    classes = (np.arange(H)[:, None] // 5 * 4 + np.arange(W)[None] // 5) % CLASSES
    spectra = RNG.uniform(0, 1, (CLASSES, BANDS))
    hsi = (spectra[classes] + RNG.normal(0, 0.02, (H, W, BANDS))).astype(np.float32)
    lidar = np.stack(
        [classes * 1.5 + RNG.normal(0, 0.1, (H, W)), classes * 1.4 + 0.2], axis=-1
    ).astype(np.float32)
    labelled = RNG.random((H, W)) < 0.7
    train_pick = RNG.random((H, W)) < 0.3
    train = np.where(labelled & train_pick, classes + 1, 0).astype(np.float64)
    test = np.where(labelled & ~train_pick, classes + 1, 0).astype(np.float64)
    mat = ROOT / 'mat'
    scipy.io.savemat(mat / 'hsi.mat', {'HSI': hsi}, do_compression=True)
    scipy.io.savemat(mat / 'lidar.mat', {'lidar': lidar}, do_compression=True)
    scipy.io.savemat(
        mat / 'train_test_gt.mat',
        {'trainlabels': train, 'testlabels': test},
        do_compression=True,
    )
    v73 = ROOT / 'v73'
    for name, arrays in (
        ('hsi.mat', {'HSI': hsi}),
        ('lidar.mat', {'lidar': lidar}),
        ('train_test_gt.mat', {'trainlabels': train, 'testlabels': test}),
    ):
        with h5py.File(v73 / name, 'w') as f:
            for key, value in arrays.items():
                f.create_dataset(key, data=value.T, compression='gzip')


if __name__ == '__main__':
    main()
