"""The detection demo: train SuperYOLO on your own kind of imagery, end to end, offline."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = (
    'CLASSES',
    'DEMO_CRS',
    'DetectionDemoResult',
    'VehicleScene',
    'run_detection_demo',
    'synthetic_vehicle_scene',
    'write_vehicle_scene',
)

#: CRS of the demo rasters: WGS 84 / UTM zone 33N.
DEMO_CRS = 'EPSG:32633'
#: CRS of the demo labels, as a GIS user would often draw them.
LABEL_CRS = 'EPSG:4326'
#: Ground sampling distance of the demo rasters in metres.
PIXEL_SIZE = 0.25
#: Vehicle classes and their (length, width) in metres.
CLASSES: dict[str, tuple[float, float]] = {'car': (4.5, 2.0), 'van': (7.5, 2.6)}
#: Body colours of the painted vehicles (RGB).
_COLOURS = np.array(
    [
        [200, 30, 30],
        [30, 60, 190],
        [235, 235, 235],
        [40, 40, 45],
        [170, 170, 175],
        [230, 200, 40],
    ],
    dtype=np.float64,
)


@dataclass
class VehicleScene:
    """A synthetic RGB + IR scene with its vehicles."""

    #: uint8 3 x H x W.
    rgb: NDArray[np.uint8]
    #: uint8 1 x H x W.
    ir: NDArray[np.uint8]
    #: N x 4 x 2 vehicle corners in pixel coordinates (x, y; pixel edges at integers).
    corners: NDArray[np.float64]
    #: N class names.
    classes: list[str]
    #: Affine transform (rasterio order) of the rasters.
    transform: tuple[float, ...]


@dataclass
class DetectionDemoResult:
    """Everything :func:`run_detection_demo` wrote and measured."""

    train_rgb: Path
    train_ir: Path
    labels: Path
    test_rgb: Path
    test_ir: Path
    checkpoint: Path
    detections: Path
    quicklook: Path
    #: mAP@0.5 of the detections on the test scene against its vehicles.
    map50: float
    #: Detections written and vehicles in the test scene.
    detected: int
    truth: int
    #: Training steps and seconds spent fitting.
    steps: int
    fit_seconds: float
    #: Mean training loss of the first and of the last tenth of the steps.
    first_loss: float
    last_loss: float


def demo_transform(origin: tuple[float, float]) -> tuple[float, ...]:
    """North-up transform with :data:`PIXEL_SIZE` pixels at a UTM origin.

    Args:
        origin: Easting and northing of the upper-left corner.

    Returns:
        The six affine coefficients (rasterio order).
    """
    return (PIXEL_SIZE, 0.0, origin[0], 0.0, -PIXEL_SIZE, origin[1])


def _smooth(rng: np.random.Generator, size: int, scale: float) -> NDArray[np.float64]:
    """A smooth random field with zero mean and unit deviation."""
    noise = rng.standard_normal((size, size))
    freq = np.fft.fftfreq(size)
    kernel = np.exp(-(freq[:, None] ** 2 + freq[None, :] ** 2) * scale**2 * 20)
    field = np.fft.ifft2(np.fft.fft2(noise) * kernel).real
    return (field - field.mean()) / (field.std() + 1e-12)


def _rectangle(
    centre: tuple[float, float], length: float, width: float, angle: float
) -> NDArray[np.float64]:
    """4 x 2 corners of a rotated rectangle (pixel coordinates)."""
    c, s = math.cos(angle), math.sin(angle)
    half = np.array(
        [[length, width], [-length, width], [-length, -width], [length, -width]]
    )
    half = half / 2
    rot = np.array([[c, -s], [s, c]])
    return np.asarray(centre) + half @ rot.T


def _inside(
    corners: NDArray[np.float64], xx: NDArray[np.float64], yy: NDArray[np.float64]
) -> NDArray[np.bool_]:
    """Pixels whose centres lie inside a convex quadrilateral."""
    inside = np.ones(xx.shape, dtype=bool)
    for k in range(4):
        x0, y0 = corners[k]
        x1, y1 = corners[(k + 1) % 4]
        cross = (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0)
        inside &= cross >= 0
    if not inside.any():  # the corner order may run the other way
        inside = np.ones(xx.shape, dtype=bool)
        for k in range(4):
            x0, y0 = corners[k]
            x1, y1 = corners[(k + 1) % 4]
            inside &= (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0) <= 0
    return inside


def _background(
    rng: np.random.Generator, size: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Grass, soil and asphalt mixed smoothly, with texture noise: (RGB H x W x 3, IR)."""
    grass = np.array([70.0, 110.0, 60.0])
    soil = np.array([140.0, 115.0, 85.0])
    asphalt = np.array([95.0, 95.0, 100.0])
    mix_soil = 1 / (1 + np.exp(-2 * _smooth(rng, size, 40)))
    mix_road = 1 / (1 + np.exp(-4 * (_smooth(rng, size, 60) - 0.5)))
    base = grass * (1 - mix_soil[..., None]) + soil * mix_soil[..., None]
    base = base * (1 - mix_road[..., None]) + asphalt * mix_road[..., None]
    rgb = base + 10 * _smooth(rng, size, 3)[..., None] + rng.normal(0, 6, base.shape)
    ir = (
        80
        + 15 * _smooth(rng, size, 30)
        - 20 * mix_road
        + rng.normal(0, 5, (size, size))
    )
    return rgb, ir


def _paint_vehicle(
    rng: np.random.Generator,
    rgb: NDArray[np.float64],
    ir: NDArray[np.float64],
    box: NDArray[np.float64],
    size: tuple[float, float],
    pixel_centres: tuple[NDArray[np.float64], NDArray[np.float64]],
    window: tuple[slice, slice],
) -> None:
    """Paint one vehicle (body, dark windscreen, warm IR) into ``rgb`` and ``ir``.

    Args:
        rng: The scene's generator.
        rgb: The scene's RGB (H x W x 3), painted in place.
        ir: The scene's IR (H x W), painted in place.
        box: The vehicle's 4 x 2 corners (pixels).
        size: Its length and width (pixels).
        pixel_centres: x and y of the pixel centres of ``window``.
        window: The rows and columns around the vehicle.
    """
    length, width = size
    xx, yy = pixel_centres
    inside = _inside(box, xx, yy)
    colour = _COLOURS[rng.integers(len(_COLOURS))]
    patch = rgb[window]
    patch[inside] = colour + rng.normal(0, 4, (int(inside.sum()), 3))
    # windscreen: a dark band a quarter of the way from the front
    front = _rectangle(
        tuple(box[:2].mean(0) * 0.7 + box.mean(0) * 0.3),  # type: ignore[arg-type]
        width * 0.8,
        length * 0.18,
        math.atan2(*(box[1] - box[0])[::-1]) + math.pi / 2,
    )
    screen = _inside(front, xx, yy) & inside
    patch[screen] = patch[screen] * 0.35
    ir[window][inside] = 175 + 25 * rng.random() + rng.normal(0, 4, inside.sum())


def synthetic_vehicle_scene(
    size: int = 512,
    vehicles: int = 40,
    seed: int = 0,
    origin: tuple[float, float] = (500_000.0, 4_000_000.0),
) -> VehicleScene:
    """Paint vehicles into a synthetic RGB + IR scene.

    The background is a smooth mixture of grass, soil and asphalt with
    texture noise; a vehicle is a rotated rectangle in one of
    :data:`_COLOURS` with a dark windscreen, warmer than its surroundings in
    the IR band. Vehicles do not overlap and lie wholly inside the scene.

    Args:
        size: Scene side in pixels.
        vehicles: Number of vehicles.
        seed: Random seed (the scene is a deterministic function of it).
        origin: UTM easting and northing of the upper-left corner.

    Returns:
        The scene.
    """
    rng = np.random.default_rng(seed)
    rgb, ir = _background(rng, size)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    taken = np.zeros((size, size), dtype=bool)
    corners: list[NDArray[np.float64]] = []
    classes: list[str] = []
    names = list(CLASSES)
    tries = 0
    while len(corners) < vehicles and tries < vehicles * 50:
        tries += 1
        name = names[int(rng.random() < 0.35)]
        length, width = (v / PIXEL_SIZE for v in CLASSES[name])
        margin = length / 2 + 2
        centre = (
            float(rng.uniform(margin, size - margin)),
            float(rng.uniform(margin, size - margin)),
        )
        box = _rectangle(centre, length, width, float(rng.uniform(0, math.pi)))
        x0, y0 = np.floor(box.min(0)).astype(int) - 2
        x1, y1 = np.ceil(box.max(0)).astype(int) + 2
        window = (slice(max(y0, 0), y1), slice(max(x0, 0), x1))
        if taken[window].any():
            continue
        _paint_vehicle(
            rng, rgb, ir, box, (length, width), (xx[window], yy[window]), window
        )
        taken[window] = True
        corners.append(box)
        classes.append(name)
    return VehicleScene(
        rgb=np.clip(rgb, 0, 255).astype(np.uint8).transpose(2, 0, 1),
        ir=np.clip(ir, 0, 255).astype(np.uint8)[None],
        corners=np.asarray(corners, dtype=np.float64).reshape(-1, 4, 2),
        classes=classes,
        transform=demo_transform(origin),
    )


def vehicle_polygons(scene: VehicleScene) -> Any:
    """The scene's vehicles as a GeoDataFrame of rotated rectangles in the scene CRS.

    Args:
        scene: A scene from :func:`synthetic_vehicle_scene`.

    Returns:
        A GeoDataFrame with ``class`` and ``geometry`` (EPSG:32633).
    """
    import geopandas as gpd
    import shapely
    from rasterio.transform import Affine

    affine = Affine(*scene.transform)
    polygons = []
    for box in scene.corners:
        xs, ys = affine @ (box[:, 0], box[:, 1])
        polygons.append(shapely.Polygon(np.column_stack([xs, ys])))
    return gpd.GeoDataFrame({'class': scene.classes}, geometry=polygons, crs=DEMO_CRS)


def write_vehicle_scene(
    scene: VehicleScene,
    directory: str | os.PathLike[str],
    stem: str,
    labels: bool = True,
) -> tuple[Path, Path, Path | None]:
    """Write a scene as ``<stem>_rgb.tif``, ``<stem>_ir.tif`` (and ``<stem>_vehicles.gpkg``).

    Args:
        scene: The scene.
        directory: Output folder (created if needed).
        stem: File name prefix.
        labels: Also write the vehicles as a GeoPackage in EPSG:4326.

    Returns:
        The RGB, IR and label paths (None without labels).
    """
    import rasterio
    from rasterio.transform import Affine

    from ..export.atomic import atomic_output, make_output_dir
    from ..export.vector import write_vector

    out = make_output_dir(directory)
    paths = []
    for name, array in (('rgb', scene.rgb), ('ir', scene.ir)):
        path = out / f'{stem}_{name}.tif'
        profile = {
            'driver': 'GTiff',
            'width': array.shape[2],
            'height': array.shape[1],
            'count': array.shape[0],
            'dtype': 'uint8',
            'crs': DEMO_CRS,
            'transform': Affine(*scene.transform),
            'tiled': True,
            'blockxsize': 256,
            'blockysize': 256,
            'compress': 'deflate',
        }
        with atomic_output(path) as tmp, rasterio.open(tmp, 'w', **profile) as dst:
            dst.write(array)
        paths.append(path)
    label_path = None
    if labels:
        label_path = write_vector(
            out / f'{stem}_vehicles.gpkg', vehicle_polygons(scene).to_crs(LABEL_CRS)
        )
    return paths[0], paths[1], label_path


def _pixel_boxes(polygons: Any, transform: tuple[float, ...]) -> NDArray[np.float64]:
    """N x 4 pixel ``xyxy`` envelopes of map polygons (float64, north-up raster)."""
    from rasterio.transform import Affine

    inverse = ~Affine(*transform)
    if len(polygons) == 0:
        return np.zeros((0, 4))
    bounds = np.asarray(polygons.bounds, dtype=np.float64)  # minx miny maxx maxy
    x0, y0 = inverse @ (bounds[:, 0], bounds[:, 3])
    x1, y1 = inverse @ (bounds[:, 2], bounds[:, 1])
    return np.column_stack([x0, y0, x1, y1])


def map50(
    detections: Any, truth: Any, transform: tuple[float, ...], classes: list[str]
) -> float:
    """mAP@0.5 (COCO-style, 101-point) of detections against known objects.

    Boxes are compared in the raster's pixel coordinates, computed in float64
    from the map polygons (float32 map coordinates would lose decimetres at
    UTM northings).

    Args:
        detections: GeoDataFrame with ``class_name``, ``score`` and polygons.
        truth: GeoDataFrame with ``class`` and polygons (same CRS).
        transform: The raster's affine transform.
        classes: Class names (ids by position).

    Returns:
        mAP@0.5 over the classes present in the truth.
    """
    import torch
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(box_format='xyxy', iou_thresholds=[0.5])
    metric.update(
        [
            {
                'boxes': torch.tensor(
                    _pixel_boxes(detections.geometry, transform), dtype=torch.float32
                ),
                'scores': torch.tensor(
                    detections['score'].to_numpy(), dtype=torch.float32
                ),
                'labels': torch.tensor(
                    [classes.index(c) for c in detections['class_name']],
                    dtype=torch.int64,
                ),
            }
        ],
        [
            {
                'boxes': torch.tensor(
                    _pixel_boxes(truth.geometry, transform), dtype=torch.float32
                ),
                'labels': torch.tensor(
                    [classes.index(c) for c in truth['class']], dtype=torch.int64
                ),
            }
        ],
    )
    return float(metric.compute()['map_50'])


def run_detection_demo(
    output: str | os.PathLike[str],
    *,
    size: int = 512,
    vehicles: int | None = None,
    steps: int = 200,
    batch_size: int = 8,
    patch_size: int = 64,
    num_workers: int = 1,
    width: float = 0.25,
    seed: int = 0,
    score_threshold: float = 0.1,
) -> DetectionDemoResult:
    """Build the scenes, fit a small SuperYOLO, detect on the second scene, score it.

    What ``torchgeo-ext demo --task detection`` runs: the path of the "Training
    on your own imagery" guide (``docs/own_imagery.md``) on built-in data.

    1. Two synthetic georeferenced scenes, each an RGB GeoTIFF and an IR
       GeoTIFF in UTM zone 33N (EPSG:32633, 0.25 m pixels), with vehicles
       painted in (:func:`synthetic_vehicle_scene`); the training scene's
       vehicles are written as a GeoPackage of rotated rectangles in EPSG:4326
       with a ``class`` column, as drawn in a GIS.
    2. A small SuperYOLO (no super-resolution branch) fitted on the first scene
       through :class:`~torchgeo_ext.datamodules.GeoDetectionDataModule`
       (patches placed on the objects by
       :class:`~torchgeo_ext.samplers.ObjectSampler`), with Lightning on the
       CPU, for a fixed number of steps.
    3. The checkpoint (which records the data module's normalisation) reloaded
       with :func:`~torchgeo_ext.trainers.load_task` and run over the second
       scene with :func:`~torchgeo_ext.pipelines.detect_raster` (tiled,
       cross-tile NMS) on the raw rasters.
    4. The detections written as a GeoPackage in the rasters' CRS, a PNG
       quicklook with the boxes over the image, and mAP@0.5 against the second
       scene's known vehicles.

    Everything is deterministic for a given seed (the training itself up to
    floating-point reduction order across thread counts).

    Args:
        output: Output folder (created if needed).
        size: Side of each scene in pixels.
        vehicles: Vehicles per scene (default: 40 per 512 x 512 pixels).
        steps: Training steps (mini-batches).
        batch_size: Patches per step.
        patch_size: Training patch side in pixels.
        num_workers: Data-loading worker processes (1 reads the next patches
            while the model trains on the current ones).
        width: SuperYOLO channel multiplier.
        seed: Seed of the scenes, the sampler and the weights.
        score_threshold: Minimum score of the detections written (mAP is
            computed from every detection scoring 0.01 or more). Lower than
            the task's 0.25: after a minute's training the rarer class (van)
            still scores low, though it ranks well.

    Returns:
        What was written and measured.
    """
    from ..export.outputs import check_outputs, directory_output
    from .output import demo_output_dir

    if vehicles is None:
        vehicles = max(4, round(40 * size * size / 512**2))
    out = Path(output)
    check_outputs([directory_output(out)])
    # Created through the output layer: removed again if the demo fails.
    demo_output_dir(out)
    test_scene, paths = _write_scenes(out, size, vehicles, seed)
    training = _DemoTraining(steps, batch_size, patch_size, num_workers, width, seed)
    data, task = _data_and_task(paths, list(CLASSES), training, score_threshold)
    with _quiet_and_sharing_cpus(num_workers):
        return _fit_and_detect(
            out, data, task, steps, score_threshold, test_scene, paths
        )


@dataclass(frozen=True)
class _DemoTraining:
    """The training settings of :func:`run_detection_demo` (see its arguments)."""

    steps: int
    batch_size: int
    patch_size: int
    num_workers: int
    width: float
    seed: int


def _write_scenes(
    out: Path, size: int, vehicles: int, seed: int
) -> tuple[VehicleScene, tuple[Path, Path, Path, Path, Path]]:
    """Write the training scene (with labels) and the test scene beside it.

    Returns:
        The test scene, and the paths (train RGB, train IR, labels, test RGB, test IR).
    """
    origin = (500_000.0, 4_000_000.0)
    train_scene = synthetic_vehicle_scene(size, vehicles, seed, origin)
    # the second scene lies next to the first (a new area of the same flight)
    test_origin = (origin[0] + size * PIXEL_SIZE + 50.0, origin[1])
    test_scene = synthetic_vehicle_scene(size, vehicles, seed + 1, test_origin)
    train_rgb, train_ir, labels = write_vehicle_scene(train_scene, out, 'train')
    test_rgb, test_ir, _ = write_vehicle_scene(test_scene, out, 'test', labels=False)
    assert labels is not None
    return test_scene, (train_rgb, train_ir, labels, test_rgb, test_ir)


def _data_and_task(
    paths: tuple[Path, Path, Path, Path, Path],
    classes: list[str],
    training: _DemoTraining,
    score_threshold: float,
) -> tuple[Any, Any]:
    """The data module over the training scene and a small SuperYOLO task (seeded)."""
    import lightning

    from ..datamodules.geo import GeoDetectionDataModule
    from ..trainers.detection import SuperYOLOTask

    train_rgb, train_ir, labels = paths[:3]
    lightning.seed_everything(training.seed, workers=True, verbose=False)
    data = GeoDetectionDataModule(
        [str(train_rgb), str(train_ir)],
        str(labels),
        classes=classes,
        patch_size=training.patch_size,
        batch_size=training.batch_size,
        num_workers=training.num_workers,
        val_split=0.0,
        test_split=0.0,
        length=training.steps * training.batch_size,
        seed=training.seed,
    )
    task = SuperYOLOTask(
        model='superyolo_mf',
        num_classes=len(classes),
        class_names=classes,
        width=training.width,
        super_resolution=False,
        ema=False,
        warmup_epochs=0.1,
        final_lr_ratio=0.1,
        score_threshold=score_threshold,
    )
    return data, task


@contextlib.contextmanager
def _quiet_and_sharing_cpus(num_workers: int) -> Iterator[None]:
    """Silence Lightning's notes and leave a core to each loading worker, then restore."""
    import torch

    # the demo prints its own summary; Lightning's notes and tips would bury it
    quiet = logging.getLogger('lightning.pytorch')
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    # compute threads fighting the loader for the CPUs of a small machine run
    # several times slower
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, min(threads, (os.cpu_count() or 1) - num_workers)))
    try:
        yield
    finally:
        quiet.setLevel(level)
        torch.set_num_threads(threads)


def _fit_and_detect(
    out: Path,
    data: Any,
    task: Any,
    steps: int,
    score_threshold: float,
    test_scene: VehicleScene,
    paths: tuple[Path, Path, Path, Path, Path],
) -> DetectionDemoResult:
    """Fit, save, reload, detect on the test scene, score and write (see the caller)."""
    from ..export.vector import write_vector

    truth = vehicle_polygons(test_scene)
    classes = list(CLASSES)
    train_rgb, train_ir, labels, test_rgb, test_ir = paths
    trainer, losses, fit_seconds = _fit(data, task, steps)
    checkpoint = out / 'superyolo_demo.ckpt'
    trainer.save_checkpoint(checkpoint)
    found = _detect_with_saved(checkpoint, test_rgb, test_ir)
    score = map50(found, truth, test_scene.transform, classes)
    kept = found[found['score'] >= score_threshold].reset_index(drop=True)
    detections = write_vector(out / 'detections.gpkg', kept)
    quicklook = _write_quicklook(
        out / 'quicklook.png', test_scene, kept, truth, score, classes
    )
    return DetectionDemoResult(
        train_rgb=train_rgb,
        train_ir=train_ir,
        labels=labels,
        test_rgb=test_rgb,
        test_ir=test_ir,
        checkpoint=checkpoint,
        detections=detections,
        quicklook=quicklook,
        map50=score,
        detected=len(kept),
        truth=len(truth),
        steps=int(trainer.global_step),
        fit_seconds=fit_seconds,
        first_loss=float(np.mean(losses[: max(1, len(losses) // 10)])),
        last_loss=float(np.mean(losses[-max(1, len(losses) // 10) :])),
    )


def _fit(data: Any, task: Any, steps: int) -> tuple[Any, list[float], float]:
    """Train on the CPU for ``steps`` steps; return the trainer, losses and seconds."""
    import warnings

    import lightning

    losses: list[float] = []

    class LossLog(lightning.Callback):
        def on_train_batch_end(
            self, trainer: Any, module: Any, outputs: Any, batch: Any, index: int
        ) -> None:
            losses.append(float(outputs['loss']))

    trainer = lightning.Trainer(
        accelerator='cpu',
        callbacks=[LossLog()],
        max_epochs=1,
        max_steps=steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        # no validation split in the demo; Lightning says so at length
        warnings.simplefilter('ignore', UserWarning)
        trainer.fit(task, datamodule=data)
    return trainer, losses, time.perf_counter() - start


def _detect_with_saved(checkpoint: Path, test_rgb: Path, test_ir: Path) -> Any:
    """Reload the checkpoint and detect (score 0.01 or more) over the test rasters."""
    import torch

    from ..pipelines.detection import detect_raster
    from ..trainers.base import load_task

    # A fresh process would start here: the checkpoint carries the
    # normalisation, so detection runs on the raw rasters.
    detector: Any = load_task(checkpoint)
    with torch.inference_mode():
        return detect_raster(
            lambda x: detector.detect_images(x, score_threshold=0.01),
            [test_rgb, test_ir],
            tile_size=256,
            overlap=64,
            class_names=detector.class_names,
            score_threshold=0.01,
            progress=False,
        )


def _write_quicklook(
    path: Path,
    scene: VehicleScene,
    detections: Any,
    truth: Any,
    score: float,
    classes: list[str],
) -> Path:
    """The test scene's RGB with the detections (coloured by class) and the truth (white)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    from ..export.atomic import atomic_output

    colours = ['#ff3b30', '#00c7ff', '#ffcc00', '#34c759']
    fig, ax = plt.subplots(figsize=(7, 7.4))
    ax.imshow(scene.rgb.transpose(1, 2, 0))
    for x0, y0, x1, y1 in _pixel_boxes(truth.geometry, scene.transform):
        ax.add_patch(
            Rectangle(
                (x0, y0), x1 - x0, y1 - y0, fill=False, ec='white', lw=0.8, ls='--'
            )
        )
    boxes = _pixel_boxes(detections.geometry, scene.transform)
    for (x0, y0, x1, y1), name, s in zip(
        boxes, detections['class_name'], detections['score'], strict=True
    ):
        colour = colours[classes.index(name) % len(colours)]
        ax.add_patch(
            Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=colour, lw=1.5)
        )
        ax.text(x0, y0 - 1, f'{s:.2f}', color=colour, fontsize=6)
    handles = [
        Patch(fill=False, ec=colours[k % len(colours)], label=f'detected {name}')
        for k, name in enumerate(classes)
    ]
    handles.append(Patch(fill=False, ec='white', ls='--', label='painted (truth)'))
    ax.legend(handles=handles, loc='lower right', fontsize=7, facecolor='0.3')
    ax.set_title(
        f'SuperYOLO on an unseen scene: {len(detections)} detections, '
        f'mAP@0.5 {score:.3f}'
    )
    ax.set_axis_off()
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, format='png')
    plt.close(fig)
    return path
