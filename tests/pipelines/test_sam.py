"""SAM outlines for boxes: a tiny SAM briefly trained here, real windows, geometry and CRS."""

import functools
import math
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from rasterio.transform import Affine
from shapely.geometry import Polygon, box

from torchgeo_ext.errors import InvalidInputError
from torchgeo_ext.models.sam import sam_tiny
from torchgeo_ext.pipelines.sam import parse_bands, refine_with_sam

CRS = 'EPSG:32633'
TRANSFORM = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 4600000.0)
SIZE = 256  # the tiny SAM's input size


def polygon_mask(
    points: list[tuple[float, float]], height: int, width: int
) -> np.ndarray:
    image = Image.new('L', (width, height), 0)
    ImageDraw.Draw(image).polygon(points, fill=1)
    return np.asarray(image, dtype=np.float32)


def training_batch(
    rng: np.random.Generator, n: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bright polygons on dark noisy ground, with jittered boxes."""
    images = np.zeros((n, 3, SIZE, SIZE), dtype=np.float32)
    masks = np.zeros((n, SIZE, SIZE), dtype=np.float32)
    boxes = []
    for k in range(n):
        ground = rng.uniform(20, 70)
        cx, cy = rng.uniform(60, 196, 2)
        radius = rng.uniform(30, 80)
        angles = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(3, 9)))
        squash = rng.uniform(0.6, 1)
        points = [
            (cx + r * np.cos(t), cy + r * np.sin(t) * squash)
            for r, t in zip(radius * rng.uniform(0.6, 1.0, len(angles)), angles)
        ]
        mask = polygon_mask(points, SIZE, SIZE)
        image = rng.normal(ground, 10, (SIZE, SIZE)) + mask * (
            rng.uniform(170, 250) - ground
        )
        images[k] = (
            np.clip(image, 0, 255)[None] * np.array([1, 0.95, 0.9])[:, None, None]
        )
        masks[k] = mask
        ys, xs = np.nonzero(mask)
        jitter = rng.uniform(-4, 4, 4)
        boxes.append(
            [
                xs.min() + jitter[0],
                ys.min() + jitter[1],
                xs.max() + 1 + jitter[2],
                ys.max() + 1 + jitter[3],
            ]
        )
    return (
        torch.from_numpy(images),
        torch.from_numpy(masks),
        torch.tensor(boxes, dtype=torch.float32),
    )


def train_tiny_sam(steps: int = 200, batch: int = 4) -> torch.nn.Module:
    """Train the tiny SAM (all of it) to outline a bright object from its box."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    sam = sam_tiny()
    optimizer = torch.optim.AdamW(sam.parameters(), lr=3e-3, weight_decay=0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=8e-3, total_steps=steps, pct_start=0.1
    )
    pe = sam.prompt_encoder.get_dense_pe
    for _ in range(steps):
        x, m, b = training_batch(rng, batch)
        embedding = sam.image_encoder(sam.preprocess(x))
        logits = []
        for i in range(batch):
            sparse, dense = sam.prompt_encoder(
                points=None, boxes=b[i : i + 1], masks=None
            )
            low, _ = sam.mask_decoder(embedding[i : i + 1], pe(), sparse, dense, False)
            logits.append(low[:, 0])
        up = F.interpolate(
            torch.cat(logits)[:, None],
            (SIZE, SIZE),
            mode='bilinear',
            align_corners=False,
        )[:, 0]
        p = up.sigmoid()
        dice = 1 - (2 * (p * m).sum((1, 2)) + 1) / (p.sum((1, 2)) + m.sum((1, 2)) + 1)
        loss = F.binary_cross_entropy_with_logits(up, m) + dice.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return sam.eval()


@functools.cache
def trained_sam_state() -> dict[str, torch.Tensor]:
    """The trained tiny SAM's weights, trained once per test process."""
    return {k: v.clone() for k, v in train_tiny_sam().state_dict().items()}


@pytest.fixture(scope='module')
def sam_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp('sam') / 'sam_tiny_trained.pth'
    torch.save(trained_sam_state(), path)
    return path


# The object: a pentagon in pixel coordinates of a 300 x 320 raster (more than
# one tiny-SAM window, so the window is placed and clipped for real).
PENTAGON = [
    (170 + 55 * math.cos(a), 150 + 45 * math.sin(a))
    for a in np.linspace(0.3, 0.3 + 2 * math.pi, 6)[:-1]
]


def to_map(points: list[tuple[float, float]]) -> Polygon:
    return Polygon([TRANSFORM @ p for p in points])


def write_scene(path: Path, bands: int = 3, dtype: str = 'uint8') -> Polygon:
    rng = np.random.default_rng(3)
    height, width = 300, 320
    mask = polygon_mask(PENTAGON, height, width)
    image = rng.normal(45, 8, (height, width)) + mask * 175
    data = np.clip(np.repeat(image[None], bands, axis=0), 0, 255)
    scale = 1 if dtype == 'uint8' else 40
    with rasterio.open(
        path,
        'w',
        driver='GTiff',
        width=width,
        height=height,
        count=bands,
        dtype=dtype,
        crs=CRS,
        transform=TRANSFORM,
    ) as dst:
        dst.write((data * scale).astype(dtype))
    return to_map(PENTAGON)


def iou(a: object, b: object) -> float:
    return float(a.intersection(b).area / a.union(b).area)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_box_comes_back_as_outline(tmp_path: Path, sam_checkpoint: Path) -> None:
    raster = tmp_path / 'scene.tif'
    truth = write_scene(raster)
    minx, miny, maxx, maxy = truth.bounds
    # an axis-aligned box, an oriented box around the object (its hull is
    # prompted), and a box outside the raster
    oriented = truth.minimum_rotated_rectangle
    outside = box(400000, 4000000, 400010, 4000010)
    gdf = gpd.GeoDataFrame(
        {'class_id': [1, 1, 2], 'score': [0.9, 0.8, 0.5]},
        geometry=[box(minx, miny, maxx, maxy), oriented, outside],
        crs=CRS,
    )
    out = tmp_path / 'outlines.gpkg'
    with pytest.warns(UserWarning, match='1 object'):
        result = refine_with_sam(gdf, [raster], sam_checkpoint, output=out)
    assert result.crs == gdf.crs
    assert list(result['sam_status']) == ['ok', 'ok', 'outside_raster']
    for k in (0, 1):
        assert iou(result.geometry[k], truth) >= 0.8
        # the outline is better than the box it came from
        assert iou(result.geometry[k], truth) > iou(gdf.geometry[k], truth)
        assert math.isfinite(result['sam_score'][k])  # SAM's predicted IoU
    assert result.geometry[2].equals(outside)
    assert math.isnan(result['sam_score'][2])
    assert result['box_wkt'][0] == gdf.geometry[0].wkt
    assert list(result['class_id']) == [1, 1, 2]
    written = gpd.read_file(out)
    assert written.crs == gdf.crs
    assert iou(written.geometry[0], truth) >= 0.8


@pytest.mark.slow
def test_other_crs_bands_and_scale(tmp_path: Path, sam_checkpoint: Path) -> None:
    raster = tmp_path / 'scene16.tif'
    truth = write_scene(raster, bands=4, dtype='uint16')
    minx, miny, maxx, maxy = truth.bounds
    gdf = gpd.GeoDataFrame(
        {'class_id': [0]}, geometry=[box(minx, miny, maxx, maxy)], crs=CRS
    ).to_crs('EPSG:4326')
    with pytest.raises(InvalidInputError, match=r'4 band.*--sam-bands'):
        refine_with_sam(gdf, raster, sam_checkpoint)
    with pytest.raises(InvalidInputError, match=r'three numbers in 1\.\.4'):
        refine_with_sam(gdf, raster, sam_checkpoint, bands=[1, 2, 5])
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no object may be left as a box
        result = refine_with_sam(
            gdf, raster, sam_checkpoint, bands=[4, 2, 1], scale=255 * 40
        )
    assert result.crs.to_epsg() == 32633  # results are in the raster's CRS
    assert iou(result.geometry[0], truth) >= 0.8
    stretched = refine_with_sam(gdf, raster, sam_checkpoint, bands=[1, 1, 1])
    assert iou(stretched.geometry[0], truth) >= 0.8


def test_parse_bands_and_bad_checkpoint(tmp_path: Path) -> None:
    assert parse_bands('1,2,3') == [1, 2, 3]
    with pytest.raises(InvalidInputError, match='three band numbers'):
        parse_bands('1,2')
    with pytest.raises(InvalidInputError, match='three band numbers'):
        parse_bands('a,b,c')
    raster = tmp_path / 'scene.tif'
    write_scene(raster)
    gdf = gpd.GeoDataFrame(geometry=[box(500010, 4599900, 500020, 4599910)], crs=CRS)
    bad = tmp_path / 'bad.pth'
    torch.save({'weights': torch.zeros(2)}, bad)
    with pytest.raises(InvalidInputError, match='not a SAM state dict'):
        refine_with_sam(gdf, raster, bad)
    with pytest.raises(ValueError, match='no CRS'):
        refine_with_sam(gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)]), raster, bad)


def test_windows_group_objects_held_whole() -> None:
    from torchgeo_ext.pipelines.sam import _group_windows, _Object

    objects = [
        _Object(0, (100.0, 100.0, 120.0, 120.0)),
        _Object(1, (600.0, 600.0, 640.0, 630.0)),  # far away: its own window
        _Object(2, (130.0, 90.0, 150.0, 140.0)),  # near object 0: shares its window
        _Object(3, (0.0, 0.0, 700.0, 300.0)),  # larger than a window
        _Object(4, (1000.0, 1000.0, 1990.0, 1990.0)),  # needs more than max_window
    ]
    groups = _group_windows(objects, 256, 0.25, 2000, 2000, max_window=1200)
    members = [[o.index for o in m] for _, m in groups]
    assert members == [[0, 2], [1], [3], [4]]
    for window, group in groups[:3]:
        assert window is not None
        col, row, w, h = window
        assert 0 <= col
        assert 0 <= row
        assert col + w <= 2000
        assert row + h <= 2000
        for o in group:  # every object lies wholly inside its window
            assert col <= o.box[0]
            assert o.box[2] <= col + w
            assert row <= o.box[1]
            assert o.box[3] <= row + h
    assert groups[0][0] is not None
    assert groups[0][0][2:] == (256, 256)
    assert groups[2][0] is not None
    assert groups[2][0][2] == 1050
    assert groups[3][0] is None  # too large: the box is kept
    assert _group_windows([], 256, 0.25, 10, 10, 100) == []


def test_empty_input(tmp_path: Path) -> None:
    raster = tmp_path / 'scene.tif'
    write_scene(raster)
    empty = gpd.GeoDataFrame({'score': []}, geometry=[], crs=CRS)
    result = refine_with_sam(empty, raster, sam_tiny())
    assert len(result) == 0
    assert {'box_wkt', 'sam_score', 'sam_status'} <= set(result.columns)
    assert result.crs == empty.crs
    # Written empty, the text columns keep their type (GIS clients read the schema).
    result = refine_with_sam(empty, raster, sam_tiny(), output=tmp_path / 'sam.gpkg')
    info = pyogrio.read_info(tmp_path / 'sam.gpkg')
    fields = dict(zip(info['fields'], info['dtypes'], strict=True))
    assert fields['box_wkt'] == 'object'
    assert fields['sam_status'] == 'object'
    assert fields['sam_score'] == 'float64'
