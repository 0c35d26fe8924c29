"""``torchgeo-ext detect --engine``: the ONNX Runtime engine gives the torch engine's boxes."""

import sys
from pathlib import Path

import geopandas as gpd
import pytest
import torch

from torchgeo_ext.cli import main
from torchgeo_ext.models.superyolo import SuperYOLO
from torchgeo_ext.trainers.base import load_task
from torchgeo_ext.trainers.detection import GHOSTTask, SuperYOLOTask

from .test_detect import VEDAI_CLASSES, OrientedDummyTask, save, write_pair

pytest.importorskip('onnxruntime')


@pytest.fixture(scope='module')
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    task = SuperYOLOTask(
        class_names=VEDAI_CLASSES,
        width=0.25,
        super_resolution=True,  # the engines drop it
        ema=False,
        max_detections=50,
    )
    with torch.no_grad():
        # Trained-like batch norms, so that folding them matters.
        for module in task.model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                assert module.running_mean is not None
                assert module.running_var is not None
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(1.5, 3.0)
                module.bias.uniform_(-0.5, 0.5)
        # Scores spread over 0.4-0.9 (random weights give ~0.002 everywhere).
        model = task.model
        assert isinstance(model, SuperYOLO)
        head = model.detect.conv
        assert head.bias is not None
        head.bias.view(3, -1)[:, 4:] = 0.0
        head.weight.mul_(10)
    task.record_normalisation({'offset': [10.0], 'scale': [200.0]})
    return save(task, tmp_path_factory.mktemp('ckpt') / 'tiny.ckpt')


def detect(tmp_path: Path, ckpt: Path, *extra: str) -> gpd.GeoDataFrame:
    rgb, ir = write_pair(tmp_path, size=80)
    out = tmp_path / f'out{len(list(tmp_path.glob("out*")))}.gpkg'
    argv = ['detect', str(rgb), str(ir), '-o', str(out), '--checkpoint', str(ckpt)]
    argv += ['--tile-size', '48', '--overlap', '16', '--score-threshold', '0.7']
    assert main([*argv, *extra]) == 0
    return gpd.read_file(out)


def as_pixels(gdf: gpd.GeoDataFrame) -> dict[str, torch.Tensor]:
    """Boxes in pixels of 0.125 m from the raster origin, and class ids."""
    bounds = torch.from_numpy(gdf.geometry.bounds.to_numpy())
    origin = torch.tensor(
        [420000.0, 4500000.0, 420000.0, 4500000.0], dtype=bounds.dtype
    )
    boxes = (bounds - origin).abs() / 0.125
    labels = torch.from_numpy(gdf['class_id'].to_numpy())
    return {'prediction_bbox_xyxy': boxes, 'prediction_label': labels}


def assert_same_detections(
    got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]
) -> None:
    """Same boxes (within 1e-3 px) and labels, in any order (NMS orders near-ties freely)."""
    boxes, labels = got['prediction_bbox_xyxy'], got['prediction_label']
    assert len(boxes) == len(expected['prediction_bbox_xyxy'])
    for box, label in zip(
        expected['prediction_bbox_xyxy'], expected['prediction_label']
    ):
        gap = (boxes - box).abs().amax(dim=1)
        nearest = int(gap.argmin())
        assert float(gap[nearest]) <= 1e-3
        assert int(labels[nearest]) == int(label)


def test_onnxruntime_engine_matches_torch(tmp_path: Path, tiny_ckpt: Path) -> None:
    torch_gdf = detect(tmp_path, tiny_ckpt)
    ort_gdf = detect(tmp_path, tiny_ckpt, '--engine', 'onnxruntime')
    assert 10 < len(torch_gdf) < 200
    assert len(ort_gdf) == len(torch_gdf)
    assert_same_detections(as_pixels(ort_gdf), as_pixels(torch_gdf))


def test_engines_in_a_notebook(tiny_ckpt: Path) -> None:
    task = load_task(tiny_ckpt)
    assert isinstance(task, SuperYOLOTask)
    x = torch.randint(0, 255, (2, 4, 40, 56)).float()  # raw values, padded to 48 x 64
    live = task.detect_images(x, score_threshold=0.84)
    assert all(0 < len(r['prediction_label']) < 50 for r in live)
    keys = set(task.state_dict())
    for engine in ('torch', 'onnxruntime'):
        assert task.set_engine(engine) is task
        assert set(task.state_dict()) == keys  # the copy is no submodule
        results = task.detect_images(x, score_threshold=0.84)
        for got, expected in zip(results, live, strict=True):
            assert_same_detections(got, expected)
    task.set_engine(None)
    assert task._inference_model is None
    with pytest.raises(ValueError, match='engine must be one of'):
        task.set_engine('tensorrt')


def test_onnxruntime_engine_refuses_other_tasks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rgb, ir = write_pair(tmp_path, size=40)
    ckpt = save(OrientedDummyTask(class_names=['a', 'b']), tmp_path / 'obb.ckpt')
    argv = ['detect', str(rgb), str(ir), '-o', str(tmp_path / 'x.gpkg')]
    argv += ['--checkpoint', str(ckpt), '--engine', 'onnxruntime']
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert 'a OrientedDummyTask checkpoint' in err
    assert 'SuperYOLOTask checkpoints only' in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / 'x.gpkg').exists()
    assert GHOSTTask.engines == ()


def test_missing_onnxruntime_is_one_line(
    tmp_path: Path,
    tiny_ckpt: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)  # import raises ImportError
    rgb, ir = write_pair(tmp_path, size=40)
    argv = ['detect', str(rgb), str(ir), '-o', str(tmp_path / 'x.gpkg')]
    argv += ['--checkpoint', str(tiny_ckpt), '--engine', 'onnxruntime']
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "ONNX Runtime is not installed: pip install 'torchgeo-ext[onnx]'" in err
