#!/usr/bin/env python3
"""Generate a tiny Trento copy in two .mat layouts.

The real scene is 166 x 600 pixels; the fake one is 20 x 30 with the real
band count (63 HSI bands, 1 LiDAR band) and the real variable names:
``split/`` has train and test maps (HSI, LiDAR, TRLabel, TSLabel), ``gt/`` the
single ground-truth layout (hsi_trento, lidar1_trento, gt_trento).
"""

import shutil
from pathlib import Path

import numpy as np
import scipy.io

ROOT = Path(__file__).resolve().parent
RNG = np.random.default_rng(1)
H, W, BANDS, CLASSES = 20, 30, 63, 6


def main() -> None:
    for folder in ('split', 'gt'):
        shutil.rmtree(ROOT / folder, ignore_errors=True)
        (ROOT / folder).mkdir()
    classes = (np.arange(H)[:, None] // 4 + np.arange(W)[None] // 6) % CLASSES
    spectra = RNG.uniform(0, 1, (CLASSES, BANDS))
    hsi = (spectra[classes] + RNG.normal(0, 0.02, (H, W, BANDS))).astype(np.float32)
    lidar = (classes * 2.0 + RNG.normal(0, 0.1, (H, W))).astype(np.float32)
    labelled = RNG.random((H, W)) < 0.7
    train_pick = RNG.random((H, W)) < 0.3
    train = np.where(labelled & train_pick, classes + 1, 0).astype(np.uint8)
    test = np.where(labelled & ~train_pick, classes + 1, 0).astype(np.uint8)
    gt = np.where(labelled, classes + 1, 0).astype(np.uint8)
    split = ROOT / 'split'
    scipy.io.savemat(split / 'HSI.mat', {'HSI': hsi}, do_compression=True)
    scipy.io.savemat(split / 'LiDAR.mat', {'LiDAR': lidar}, do_compression=True)
    scipy.io.savemat(split / 'TRLabel.mat', {'TRLabel': train}, do_compression=True)
    scipy.io.savemat(split / 'TSLabel.mat', {'TSLabel': test}, do_compression=True)
    one = ROOT / 'gt'
    scipy.io.savemat(one / 'HSI_Trento.mat', {'hsi_trento': hsi}, do_compression=True)
    scipy.io.savemat(
        one / 'Lidar1_Trento.mat', {'lidar1_trento': lidar}, do_compression=True
    )
    scipy.io.savemat(one / 'GT_Trento.mat', {'gt_trento': gt}, do_compression=True)


if __name__ == '__main__':
    main()
