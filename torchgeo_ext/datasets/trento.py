"""Trento HSI + LiDAR dataset."""

from __future__ import annotations

from .hsi_lidar import HSILiDARDataset


class Trento(HSILiDARDataset):
    """Trento hyperspectral + LiDAR land-cover dataset.

    A rural scene south of Trento, Italy: an AISA Eagle hyperspectral cube
    (63 bands, 402-989 nm) and an Optech ALTM 3100EA LiDAR DSM, 166 x 600
    pixels at 1 m, 6 classes; the usual split has 819 training and 29,395 test
    pixels. The data are distributed by the authors on request; no official
    public file layout exists, so the common ``.mat`` releases are read.

    Dataset format (parts are found by variable name, see
    :class:`~torchgeo_ext.datasets.hsi_lidar.HSILiDARDataset`):

    * ``HSI.mat`` (``HSI``, 166 x 600 x 63), ``LiDAR.mat`` (``LiDAR``, 166 x
      600 or 166 x 600 x k), ``TRLabel.mat`` (``TRLabel``) and
      ``TSLabel.mat`` (``TSLabel``), labels 1-6 and 0 unlabelled;
    * or ``HSI_Trento.mat`` (``hsi_trento``), ``Lidar1_Trento.mat``
      (``lidar1_trento``) and ``GT_Trento.mat`` (``gt_trento``), one
      ground-truth map: pass ``train_per_class`` to draw a training split.

    No release is georeferenced.

    Dataset classes:

    1. Apple trees
    2. Buildings
    3. Ground
    4. Woods
    5. Vineyard
    6. Roads

    Labels are 0-based in samples (class 1 is label 0).

    If you use this dataset in your research, please cite:

    * https://doi.org/10.1109/TGRS.2016.2574121 (Rasti et al., IEEE TGRS 2017),
      one of the papers introducing the split used here.
    """

    classes = ('Apple trees', 'Buildings', 'Ground', 'Woods', 'Vineyard', 'Roads')
    hsi_bands = 63
    scene_shape = (166, 600)
    hsi_keys = ('hsi', 'hsi_trento', 'trento', 'data')
    lidar_keys = ('lidar', 'lidar_trento', 'lidar1_trento', 'dsm')
    gt_keys = ('gt', 'gt_trento', 'allgrd', 'ground_truth', 'labels')
    #: About 650, 550 and 460 nm.
    rgb_band_indices = (27, 16, 6)
