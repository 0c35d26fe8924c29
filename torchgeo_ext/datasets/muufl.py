"""MUUFL Gulfport HSI + LiDAR dataset."""

from __future__ import annotations

from .hsi_lidar import HSILiDARDataset


class MUUFL(HSILiDARDataset):
    """MUUFL Gulfport hyperspectral + LiDAR land-cover dataset.

    The `MUUFL Gulfport <https://github.com/GatorSense/MUUFLGulfport>`__
    campus scene (University of Southern Mississippi Gulf Park): a CASI-1500
    cube of 64 bands (375-1050 nm; the 72 delivered bands minus 4 noisy ones
    at each end) and two LiDAR elevation rasters (first and last return),
    325 x 220 pixels at about 1 m, 11 classes (53,687 labelled pixels).

    Dataset format (parts are found by variable name, see
    :class:`~torchgeo_ext.datasets.hsi_lidar.HSILiDARDataset`):

    * ``hsi.mat`` (``HSI``, 325 x 220 x 64), ``lidar.mat`` (``lidar``,
      325 x 220 x 2) and ``train_test_gt.mat`` (``trainlabels``,
      ``testlabels``), labels 1-11 and 0 unlabelled (the layout of M3amba's
      preparation script);
    * or one ground-truth map (``gt``/``labels``; -1 or 0 unlabelled): pass
      ``train_per_class`` (papers often use 20) to draw a training split.

    The GatorSense release itself (``muufl_gulfport_campus_1_hsi_220_label.mat``,
    one MATLAB struct ``hsi`` with ``Data``, ``Lidar`` and ``sceneLabels``
    fields) is not read: export its arrays to the layout above first. No
    release read here is georeferenced.

    Dataset classes:

    1. Trees
    2. Mostly grass
    3. Mixed ground surface
    4. Dirt and sand
    5. Road
    6. Water
    7. Building shadow
    8. Building
    9. Sidewalk
    10. Yellow curb
    11. Cloth panels

    Labels are 0-based in samples (class 1 is label 0).

    If you use this dataset in your research, please cite:

    * Gader et al., "MUUFL Gulfport Hyperspectral and LiDAR Airborne Data
      Set", University of Florida, Tech. Rep. REP-2013-570, 2013
    * Du and Zare, "Scene Label Ground Truth Map for MUUFL Gulfport Data Set",
      University of Florida, Tech. Rep. 20170417, 2017
    """

    classes = (
        'Trees',
        'Mostly grass',
        'Mixed ground surface',
        'Dirt and sand',
        'Road',
        'Water',
        'Building shadow',
        'Building',
        'Sidewalk',
        'Yellow curb',
        'Cloth panels',
    )
    hsi_bands = 64
    scene_shape = (325, 220)
    hsi_keys = ('hsi', 'hsi_data', 'muufl', 'data')
    lidar_keys = ('lidar', 'lidar_data', 'dsm')
    train_keys = ('trainlabels', 'trlabel', 'train_label', 'tr_label', 'tr_map')
    test_keys = (
        'testlabels',
        'tslabel',
        'test_label',
        'ts_label',
        'te_label',
        'ts_map',
    )
    gt_keys = ('gt', 'labels', 'scenelabels', 'ground_truth')
    #: About 650, 550 and 460 nm.
    rgb_band_indices = (26, 17, 8)
