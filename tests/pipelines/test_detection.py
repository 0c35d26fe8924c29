from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from scipy import ndimage
from torch import Tensor

from torchgeo_ext.export.raster import write_raster
from torchgeo_ext.pipelines import tiling
from torchgeo_ext.pipelines.detection import detect_raster
from torchgeo_ext.pipelines.tiling import tile_grid

UTM = from_origin(500000, 5000000, 10, 10)


def make_raster(path: Path, array: np.ndarray) -> Path:
    return write_raster(path, array, crs='EPSG:32633', transform=UTM, cog=False)


def blob_detector(oriented: bool = False, partial_bonus: bool = True) -> Any:
    """Boxes around bright blobs of band 0, clipped to the tile (cut objects give partial boxes)."""

    def detect(x: Tensor) -> list[dict[str, Tensor]]:
        results = []
        for img in x:
            labels, _ = ndimage.label(img[0].numpy() > 0.5)
            boxes, classes, scores = [], [], []
            for sl in ndimage.find_objects(labels):
                y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
                boxes.append([x0, y0, x1, y1])
                classes.append(int(img[1, y0, x0] > 0.5))
                # partial boxes score higher: merging must not prefer them
                scores.append(
                    0.9 - 0.001 * (x1 - x0) * (y1 - y0) if partial_bonus else 0.9
                )
            b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
            if oriented:
                x0_, y0_, x1_, y1_ = b.unbind(-1)
                b = torch.stack([x0_, y0_, x1_, y0_, x1_, y1_, x0_, y1_], dim=-1)
            key = 'prediction_bbox' if oriented else 'prediction_bbox_xyxy'
            results.append(
                {
                    key: b,
                    'prediction_label': torch.tensor(classes, dtype=torch.long),
                    'prediction_score': torch.tensor(scores),
                }
            )
        return results

    return detect


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    array = np.zeros((2, 100, 100), np.float32)
    array[0, 10:20, 36:48] = 1  # cut by the border at x = 40 of the first tile column
    array[0, 36:46, 70:80] = 1  # cut by the border at y = 40 of the first tile row
    array[1, 36:46, 70:80] = 1  # class 1
    array[0, 90:100, 0:6] = 1  # touches the raster edge only
    array[0, 60:64, 60:64] = 1
    return make_raster(tmp_path / 'scene.tif', array)


EXPECTED = [
    (36, 10, 48, 20, 0),
    (70, 36, 80, 46, 1),
    (0, 90, 6, 100, 0),
    (60, 60, 64, 64, 0),
]


def pixel_boxes(gdf: gpd.GeoDataFrame) -> list[tuple[int, ...]]:
    out = []
    for geom, cls in zip(gdf.geometry, gdf['class_id']):
        minx, miny, maxx, maxy = geom.bounds
        out.append(
            (
                round((minx - 500000) / 10),
                round((5000000 - maxy) / 10),
                round((maxx - 500000) / 10),
                round((5000000 - miny) / 10),
                int(cls),
            )
        )
    return sorted(out)


@pytest.mark.parametrize('oriented', [False, True])
def test_cross_tile_merge_keeps_one_object(
    tmp_path: Path, scene: Path, oriented: bool
) -> None:
    # tiles of 40 with overlap 16 start at 0, 24, 48, 60: the first object is seen whole
    # in the tile at x = 24 and cut (4 px wide, IoU 0.33) in the tile at x = 0
    gdf = detect_raster(
        blob_detector(oriented),
        scene,
        tmp_path / 'dets.gpkg',
        tile_size=40,
        overlap=16,
        class_names=['car', 'van'],
        oriented=oriented,
        progress=False,
    )
    assert pixel_boxes(gdf) == sorted(EXPECTED)
    assert gdf.crs.to_epsg() == 32633
    assert list(gdf.columns) == ['class_id', 'class_name', 'score', 'geometry']
    assert set(gdf['class_name']) == {'car', 'van'}
    assert list(gdf['score']) == sorted(gdf['score'], reverse=True)
    back = gpd.read_file(tmp_path / 'dets.gpkg')
    assert len(back) == 4


def test_plain_nms_would_keep_cut_duplicates(scene: Path) -> None:
    from torchvision.ops import batched_nms

    # the same tiles, merged by NMS alone: the cut object survives twice
    boxes, scores, labels = [], [], []
    for r in tile_grid(100, 40, 16):
        for c in tile_grid(100, 40, 16):
            with rasterio.open(scene) as src:
                x = torch.from_numpy(
                    src.read(window=rasterio.windows.Window(c, r, 40, 40))
                )
            (res,) = blob_detector()(x[None])
            b = res['prediction_bbox_xyxy'] + torch.tensor([c, r, c, r])
            boxes.append(b)
            scores.append(res['prediction_score'])
            labels.append(res['prediction_label'])
    keep = batched_nms(torch.cat(boxes), torch.cat(scores), torch.cat(labels), 0.5)
    assert len(keep) > len(EXPECTED)


def test_detect_score_threshold_and_single_tile(tmp_path: Path, scene: Path) -> None:
    gdf = detect_raster(
        blob_detector(partial_bonus=False),
        scene,
        tile_size=128,
        overlap=16,
        score_threshold=0.95,
        progress=False,
    )
    assert len(gdf) == 0
    assert gdf.crs.to_epsg() == 32633
    gdf = detect_raster(
        blob_detector(partial_bonus=False),
        scene,
        tile_size=128,
        overlap=16,
        progress=False,
    )
    assert pixel_boxes(gdf) == sorted(EXPECTED)


def test_detect_bad_model_output(scene: Path) -> None:
    with pytest.raises(ValueError, match='prediction_bbox_xyxy'):
        detect_raster(
            lambda x: [{'boxes': torch.zeros(0, 4)}] * len(x),
            scene,
            tile_size=64,
            overlap=16,
            progress=False,
        )
    with pytest.raises(ValueError, match='results'):
        detect_raster(lambda x: [], scene, tile_size=64, overlap=16, progress=False)


def test_strips_give_the_same_detections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiles read strip by strip (several strips on a 700 px wide raster) give
    # the same merged objects as one strip.
    array = np.zeros((2, 80, 700), np.float32)
    for x0 in range(5, 690, 37):
        array[0, 20:30, x0 : x0 + 9] = 1  # objects on and between tile edges
    array[1, :, 300:] = 1
    path = make_raster(tmp_path / 'wide.tif', array)
    options: dict[str, Any] = {'tile_size': 64, 'overlap': 24, 'progress': False}
    one = detect_raster(blob_detector(), path, **options)
    monkeypatch.setattr(tiling, 'STRIP_WIDTH', 128)
    assert len(tiling.column_strips(tile_grid(700, 64, 24), 64, 700, 128)) >= 2
    many = detect_raster(blob_detector(), path, **options)
    assert pixel_boxes(many) == pixel_boxes(one)
    assert len(one) == len(range(5, 690, 37))


def dark_blob_detector() -> Any:
    """Boxes around dark blobs of band 0: it also fires on zero-filled nodata, as real detectors do."""

    def detect(x: Tensor) -> list[dict[str, Tensor]]:
        return blob_detector(partial_bonus=False)(
            torch.stack((x[:, 0] < 0.1, x[:, 0] > 2), 1).float()
        )

    return detect


def test_detections_over_nodata_are_dropped(tmp_path: Path) -> None:
    array = np.full((2, 100, 100), 0.5, np.float32)
    array[0, 10:20, 10:20] = 0.05  # a dark object on valid pixels
    array[:, 10:20, 60:70] = -9999  # nodata: zero-filled, the detector fires
    array[0, 60:70, 60:70] = 0.05  # a dark object, 30 % of its box nodata
    array[1, 60:70, 60:63] = -9999
    path = write_raster(
        tmp_path / 'gaps.tif', array, crs='EPSG:32633', transform=UTM, nodata=-9999
    )
    options: dict[str, Any] = {'tile_size': 40, 'overlap': 16, 'progress': False}
    kept = detect_raster(dark_blob_detector(), path, max_invalid=None, **options)
    assert (60, 10, 70, 20, 0) in pixel_boxes(kept)
    assert kept.attrs['dropped_invalid'] == 0
    gdf = detect_raster(dark_blob_detector(), path, **options)
    assert pixel_boxes(gdf) == [(10, 10, 20, 20, 0), (60, 60, 70, 70, 0)]
    assert gdf.attrs['dropped_invalid'] == 1
    strict = detect_raster(dark_blob_detector(), path, max_invalid=0.2, **options)
    assert pixel_boxes(strict) == [(10, 10, 20, 20, 0)]
    assert strict.attrs['dropped_invalid'] == 2


def test_all_nodata_raster_gives_no_objects(tmp_path: Path) -> None:
    array = np.full((2, 90, 90), -9999, np.float32)
    path = write_raster(
        tmp_path / 'empty.tif', array, crs='EPSG:32633', transform=UTM, nodata=-9999
    )
    gdf = detect_raster(
        dark_blob_detector(), path, tile_size=40, overlap=16, progress=False
    )
    assert len(gdf) == 0
    # the detector saw one dark area in every tile; merged across tiles it is one object
    assert gdf.attrs['dropped_invalid'] >= 1


@pytest.mark.parametrize('precision', ['16-mixed', 'bf16-mixed'])
def test_mixed_precision_runs_the_model_under_autocast(
    scene: Path, precision: str
) -> None:
    seen: list[torch.dtype] = []
    conv = torch.nn.Conv2d(2, 2, 1)
    detector = blob_detector()

    def model(x: Tensor) -> list[dict[str, Tensor]]:
        seen.append(conv(x).dtype)  # autocast runs convolutions in low precision
        return detector(x)

    gdf = detect_raster(
        model, scene, tile_size=40, overlap=16, precision=precision, progress=False
    )
    expected = torch.float16 if precision == '16-mixed' else torch.bfloat16
    assert seen
    assert set(seen) == {expected}
    assert pixel_boxes(gdf) == sorted(EXPECTED)
    with pytest.raises(ValueError, match='precision'):
        detect_raster(model, scene, precision='16', progress=False)


def test_detections_over_a_gdal_mask_are_dropped(tmp_path: Path) -> None:
    # No nodata value: the gap is an internal GDAL mask, as a sensor gap often is.
    array = np.full((2, 100, 100), 0.5, np.float32)
    array[0, 10:20, 10:20] = 0.05  # a dark object on valid pixels
    array[:, 10:20, 60:70] = 0  # masked out: the detector fires on the fill
    path = tmp_path / 'masked.tif'
    profile = {'driver': 'GTiff', 'width': 100, 'height': 100, 'count': 2}
    profile |= {'dtype': 'float32', 'crs': 'EPSG:32633', 'transform': UTM}
    mask = np.full((100, 100), 255, np.uint8)
    mask[10:20, 60:70] = 0
    env = rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True)
    with env, rasterio.open(path, 'w', **profile) as dst:
        dst.write(array)
        dst.write_mask(mask)
    options: dict[str, Any] = {'tile_size': 40, 'overlap': 16, 'progress': False}
    kept = detect_raster(dark_blob_detector(), path, max_invalid=None, **options)
    assert (60, 10, 70, 20, 0) in pixel_boxes(kept)
    gdf = detect_raster(dark_blob_detector(), path, **options)
    assert pixel_boxes(gdf) == [(10, 10, 20, 20, 0)]
    assert gdf.attrs['dropped_invalid'] == 1
