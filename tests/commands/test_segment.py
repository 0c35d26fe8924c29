import json
from pathlib import Path
from typing import Any

import lightning
import numpy as np
import pytest
import rasterio
import torch

from torchgeo_ext.cli import main
from torchgeo_ext.datasets.fyh import FYH, grid_transform
from torchgeo_ext.errors import InvalidInputError, MissingInputError
from torchgeo_ext.pipelines.segmentation import segment_raster
from torchgeo_ext.trainers.segmentation import SegmentationTask


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    task = SegmentationTask(
        model='dianet_w8',
        model_kwargs={'layer1_planes': 4, 'attention_channels': 8},
        class_names=list(FYH.classes),
        tile_size=64,
    )
    # Make the fill class the most likely one everywhere: it must never be chosen.
    head: Any = task.model
    with torch.no_grad():
        head.head[-1].bias[10] = 100.0
    trainer = lightning.Trainer(logger=False, enable_checkpointing=False)
    trainer.strategy.connect(task)
    path = tmp_path_factory.mktemp('ckpt') / 'dianet.ckpt'
    trainer.save_checkpoint(path)
    return path


def write_scene(
    path: Path, bands: int = 14, height: int = 90, width: int = 110
) -> Path:
    rng = np.random.default_rng(0)
    data = rng.random((bands, height, width), dtype=np.float32)
    data[:, :3, :5] = -1  # nodata corner
    with rasterio.open(
        path,
        'w',
        driver='GTiff',
        width=width,
        height=height,
        count=bands,
        dtype='float32',
        crs='EPSG:4326',
        transform=grid_transform(),
        nodata=-1,
    ) as dst:
        dst.write(data)
    return path


def test_segment_georeferencing(tmp_path: Path, checkpoint: Path) -> None:
    scene = write_scene(tmp_path / 'scene.tif')
    out = tmp_path / 'classes.tif'
    vector = tmp_path / 'classes.gpkg'
    status = main(
        [
            'segment',
            str(scene),
            '-o',
            str(out),
            '--checkpoint',
            str(checkpoint),
            '--vector',
            str(vector),
            '--overlap',
            '16',
        ]
    )
    assert status == 0
    with rasterio.open(scene) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs
        assert dst.transform == src.transform
        assert (dst.width, dst.height) == (src.width, src.height)
        assert dst.count == 1
        assert dst.dtypes[0] == 'uint8'
        assert dst.nodata == 255
        assert json.loads(dst.tags()['class_names']) == list(FYH.classes)
        classes = dst.read(1)
    assert (classes[:3, :5] == 255).all()
    valid = classes[3:]
    assert valid.max() <= 9  # the fill class is never predicted
    import geopandas as gpd

    gdf = gpd.read_file(vector)
    assert gdf.crs is not None
    assert gdf.crs.to_epsg() == 4326
    assert {'class_id', 'class_name'} <= set(gdf.columns)
    assert set(gdf['class_id']) == set(np.unique(classes[classes != 255]).tolist())
    assert set(gdf['class_name']) <= set(FYH.classes[:10])
    # The polygons cover the valid pixels: total area = valid pixels x pixel area.
    pixel_area = 0.05 * 0.05
    assert gdf.area.sum() == pytest.approx(
        (classes != 255).sum() * pixel_area, rel=1e-9
    )
    # Scores: mean probability of the polygon's class, at least 1 / 10 (argmax of
    # 10 possible classes) and at most 1.
    assert ((gdf['score'] > 0.1 - 1e-6) & (gdf['score'] <= 1 + 1e-6)).all()
    # Without --vector the class raster is the same.
    plain = tmp_path / 'plain.tif'
    args = ['segment', str(scene), '-o', str(plain), '--checkpoint', str(checkpoint)]
    assert main([*args, '--overlap', '16']) == 0
    with rasterio.open(plain) as dst:
        np.testing.assert_array_equal(dst.read(1), classes)
        assert json.loads(dst.tags()['class_names']) == list(FYH.classes)


def test_single_tile_matches_model(tmp_path: Path, checkpoint: Path) -> None:
    scene = write_scene(tmp_path / 'scene.tif', height=40, width=50)
    out = tmp_path / 'classes.tif'
    result = segment_raster(scene, out, checkpoint, tile_size=64, overlap=0)
    with rasterio.open(scene) as src:
        image = src.read()
    image[image == -1] = 0  # nodata is fed to the model as zeros
    task = SegmentationTask.load_from_checkpoint(checkpoint).eval()
    with torch.no_grad():
        expected = (
            task.predict_logits(torch.from_numpy(image)[None]).argmax(1)[0].numpy()
        )
    expected[:3, :5] = 255
    with rasterio.open(out) as dst:
        np.testing.assert_array_equal(dst.read(1), expected)
    assert sum(result.counts.values()) == 40 * 50 - 15
    assert result.vector is None
    # Polygon scores: the mean probability of the class over each region.
    vector = tmp_path / 'regions.geojson'
    result = segment_raster(
        scene, out, checkpoint, tile_size=64, overlap=0, vector=vector
    )
    with torch.no_grad():
        logits = task.predict_logits(torch.from_numpy(image)[None])
    confidence = logits.softmax(1).max(1).values[0].numpy()
    import geopandas as gpd
    from rasterio.features import rasterize

    gdf = gpd.read_file(vector)
    assert len(gdf) == result.polygons > 0
    for geom, class_id, score in zip(
        gdf.geometry, gdf['class_id'], gdf['score'], strict=True
    ):
        inside = (
            rasterize([(geom, 1)], out_shape=(40, 50), transform=grid_transform()) == 1
        )
        assert (expected[inside] == class_id).all()
        assert score == pytest.approx(confidence[inside].mean(), rel=1e-5)


def test_stacked_inputs(tmp_path: Path, checkpoint: Path) -> None:
    a = write_scene(tmp_path / 'a.tif', bands=6, height=30, width=30)
    b = write_scene(tmp_path / 'b.tif', bands=8, height=30, width=30)
    result = segment_raster([a, b], tmp_path / 'out.tif', checkpoint)
    assert result.output.exists()


def test_wrong_band_count(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scene = write_scene(tmp_path / 'rgb.tif', bands=3, height=20, width=20)
    out = tmp_path / 'out.tif'
    with pytest.raises(InvalidInputError, match=r'has 3 band.*expects 14'):
        segment_raster(scene, out, checkpoint)
    status = main(
        ['segment', str(scene), '-o', str(out), '--checkpoint', str(checkpoint)]
    )
    assert status == 2
    err = capsys.readouterr().err
    assert 'rgb.tif' in err
    assert 'expects 14' in err
    assert not out.exists()


def test_bad_options_and_missing_files(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scene = write_scene(tmp_path / 'scene.tif', height=20, width=20)
    out = tmp_path / 'out.tif'
    with pytest.raises(MissingInputError):
        segment_raster(scene, out, tmp_path / 'nope.ckpt')
    with pytest.raises(MissingInputError):
        segment_raster(tmp_path / 'nope.tif', out, checkpoint)
    with pytest.raises(InvalidInputError, match='overlap'):
        segment_raster(scene, out, checkpoint, tile_size=32, overlap=32)
    with pytest.raises(InvalidInputError, match='vector format'):
        segment_raster(scene, out, checkpoint, vector=tmp_path / 'x.shpx')
    args = ['segment', str(scene), '-o', str(out), '--checkpoint', str(checkpoint)]
    with pytest.raises(SystemExit) as info:  # argparse: one usage line
        main([*args, '--tile-size', '0'])
    assert info.value.code == 2
    assert 'must be positive' in capsys.readouterr().err
    assert not out.exists()
