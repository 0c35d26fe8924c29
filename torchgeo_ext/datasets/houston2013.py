"""Houston 2013 (IEEE GRSS Data Fusion Contest 2013) HSI + LiDAR dataset."""

from __future__ import annotations

from typing import ClassVar

from .hsi_lidar import HSILiDARDataset


class Houston2013(HSILiDARDataset):
    """Houston 2013 hyperspectral + LiDAR land-cover dataset.

    The `2013 IEEE GRSS Data Fusion Contest <https://hyperspectral.ee.uh.edu/?page_id=459>`__
    scene over the University of Houston campus: a CASI-1500 hyperspectral
    cube (144 bands, 380-1050 nm) and a LiDAR digital surface model, both
    349 x 1905 pixels at 2.5 m, with the contest's fixed training (2,832
    pixels) and test (12,197 pixels) samples in 15 classes.

    Dataset format (``root`` holds one of them; parts are found by variable
    or file name, see :class:`~torchgeo_ext.datasets.hsi_lidar.HSILiDARDataset`):

    * ``.mat`` releases, e.g. ``HSI.mat`` (``HSI``, 349 x 1905 x 144),
      ``LiDAR.mat`` (``LiDAR``, 349 x 1905), ``TRLabel.mat`` (``TRLabel``)
      and ``TSLabel.mat`` (``TSLabel``), labels 1-15 and 0 unlabelled (the
      layout of M3amba's preparation script); or MIViT's ``Houston.mat``
      (``HSI``, ``trainlabels``, ``testlabels``) with ``LiDAR_MP.mat``
      (``LiDAR``, any number of bands). No georeferencing.
    * the GeoTIFF release of the contest: ``2013_IEEE_GRSS_DF_Contest_CASI.tif``
      and ``2013_IEEE_GRSS_DF_Contest_LiDAR.tif`` (georeferenced, UTM 15N),
      with the training/test samples rasterised to ``train_roi.tif`` and
      ``val_roi.tif`` (the contest ships them as ENVI ROI files, which are not
      read: rasterise them first). Samples then carry ``crs`` and ``transform``.

    Dataset classes:

    1. Healthy grass
    2. Stressed grass
    3. Synthetic grass
    4. Trees
    5. Soil
    6. Water
    7. Residential
    8. Commercial
    9. Road
    10. Highway
    11. Railway
    12. Parking lot 1
    13. Parking lot 2
    14. Tennis court
    15. Running track

    Labels are 0-based in samples (class 1 is label 0).

    If you use this dataset in your research, please cite:

    * https://doi.org/10.1109/JSTARS.2014.2305441 (Debes et al., IEEE JSTARS 2014)
    """

    classes = (
        'Healthy grass',
        'Stressed grass',
        'Synthetic grass',
        'Trees',
        'Soil',
        'Water',
        'Residential',
        'Commercial',
        'Road',
        'Highway',
        'Railway',
        'Parking lot 1',
        'Parking lot 2',
        'Tennis court',
        'Running track',
    )
    hsi_bands = 144
    scene_shape = (349, 1905)
    hsi_keys = ('hsi', 'houston', 'casi', 'houston2013', 'data')
    lidar_keys = ('lidar', 'dsm', 'lidar_dsm', 'lidar_mp')
    gt_keys = ('gt', 'gt_houston', 'ground_truth', 'labels')
    geotiff_files: ClassVar[dict[str, tuple[str, ...]]] = {
        'hsi': ('2013_IEEE_GRSS_DF_Contest_CASI.tif',),
        'lidar': ('2013_IEEE_GRSS_DF_Contest_LiDAR.tif',),
        'train': ('train_roi.tif', '2013_IEEE_GRSS_DF_Contest_Samples_TR.tif'),
        'test': ('val_roi.tif', '2013_IEEE_GRSS_DF_Contest_Samples_VA.tif'),
    }
    #: About 650, 550 and 460 nm.
    rgb_band_indices = (58, 36, 17)
