"""The anomaly demo: hyperspectral anomaly detection on a built-in georeferenced scene."""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Target abundances of the demo scene: faint enough that the methods differ.
DEMO_ABUNDANCE = (0.05, 0.2)

#: BSDM training steps in the demo (paper: 500), so the whole demo takes about a minute.
DEMO_BSDM_ITERATIONS = 100

#: BSDM pixels per training step in the demo (the authors': every pixel, 16384 here).
DEMO_BSDM_PIXELS = 1024

#: Methods the demo runs by default: every method that needs no trained checkpoint.
DEFAULT_METHODS = ('rx', 'lrx', 'crd', 'bsdm')


@dataclass
class MethodResult:
    """One method's outputs and scores on the demo scene."""

    method: str
    scores: Path
    auc: float
    seconds: float
    vector: Path | None = None
    regions: int = 0


@dataclass
class DemoResult:
    """Everything :func:`run_demo` wrote."""

    scene: Path
    quicklook: Path
    table: Path
    methods: list[MethodResult] = field(default_factory=list)


def run_demo(
    output: str | os.PathLike[str],
    *,
    methods: tuple[str, ...] = DEFAULT_METHODS,
    size: int = 128,
    bands: int = 50,
    seed: int = 0,
    threshold: float = 0.999,
) -> DemoResult:
    """Run the demo: build the scene, detect anomalies with each method, write the outputs.

    What ``torchgeo-ext demo`` runs: a small synthetic hyperspectral scene (a
    real projected CRS, EPSG:32633, with sub-pixel targets implanted at known
    places, :mod:`torchgeo_ext.demos.scene`) goes through ``torchgeo-ext
    anomaly`` with each method; every method gets a score GeoTIFF with the
    scene's CRS and transform, and RX also the anomaly polygons as a
    GeoPackage. A PNG quicklook shows the scene, the truth and every score map
    side by side, and a CSV table gives each method's ROC AUC against the
    implanted truth and its run time. Nothing is downloaded.

    Args:
        output: Output directory (created if needed).
        methods: Detection methods to compare (see ``torchgeo-ext anomaly --help``).
        size: Scene height and width in pixels.
        bands: Scene band count.
        seed: Random seed of the scene and of the learned methods.
        threshold: Score quantile above which RX pixels become polygons.

    Returns:
        The paths written and each method's ROC AUC.
    """
    from ..export.outputs import check_outputs, directory_output
    from .output import demo_output_dir
    from .scene import make_demo_scene

    out = Path(output)
    check_outputs([directory_output(out)])
    demo_output_dir(out)
    scene, truth = make_demo_scene(
        out / 'scene.tif', size=size, bands=bands, seed=seed, abundance=DEMO_ABUNDANCE
    )
    result = DemoResult(
        scene=scene, quicklook=out / 'quicklook.png', table=out / 'methods.csv'
    )
    score_maps: dict[str, NDArray[np.float32]] = {}
    for method in methods:
        scored, score_maps[method] = _run_method(
            method, scene, truth, out, seed=seed, threshold=threshold
        )
        result.methods.append(scored)
    _write_table(result.table, result.methods)
    _write_quicklook(result.quicklook, scene, truth, score_maps, result.methods)
    return result


def _run_method(
    method: str,
    scene: Path,
    truth: NDArray[np.bool_],
    out: Path,
    *,
    seed: int,
    threshold: float,
) -> tuple[MethodResult, NDArray[np.float32]]:
    """Run one method over the scene, timed; read back its scores and rate them.

    Args:
        method: The detection method.
        scene: The scene GeoTIFF.
        truth: The implanted targets.
        out: Output directory.
        seed: Seed of a learned method.
        threshold: Score quantile above which RX pixels become polygons.

    Returns:
        The method's result and its score map.
    """
    import rasterio
    import torch

    from ..metrics.anomaly import auc_d_f
    from ..pipelines.anomaly import anomaly_raster

    vector = out / f'{method}_anomalies.gpkg' if method == 'rx' else None
    options: dict[str, Any] = {}
    if method == 'bsdm':
        options = {
            'seed': seed,
            'iterations': DEMO_BSDM_ITERATIONS,
            'batch_size': DEMO_BSDM_PIXELS,
        }
    start = time.perf_counter()
    # BSDM's small per-step matrices run several times slower on two
    # contending threads than on one (10 steps: 13 s against 2 s).
    threads = torch.get_num_threads()
    if method == 'bsdm':
        torch.set_num_threads(1)
    try:
        written = anomaly_raster(
            scene,
            out / f'{method}_scores.tif',
            method=method,
            vector=vector,
            threshold=threshold,
            **options,
        )
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - start
    with rasterio.open(written.scores) as src:
        scores = src.read(1)
    scored = MethodResult(
        method=method,
        scores=written.scores,
        auc=auc_d_f(scores, truth),
        seconds=seconds,
        vector=written.vector,
        regions=written.regions,
    )
    return scored, scores


def _write_table(path: Path, methods: list[MethodResult]) -> None:
    """Write the per-method AUC and run time as CSV, atomically."""
    from ..export.atomic import atomic_output

    with atomic_output(path) as tmp, open(tmp, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['method', 'roc_auc', 'seconds', 'scores'])
        for m in methods:
            writer.writerow(
                [m.method, f'{m.auc:.4f}', f'{m.seconds:.2f}', m.scores.name]
            )


def _write_quicklook(
    path: Path,
    scene: Path,
    truth: NDArray[np.bool_],
    score_maps: dict[str, NDArray[np.float32]],
    methods: list[MethodResult],
) -> None:
    """Plot the false-colour scene, the truth and every score map into one PNG."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import rasterio

    from ..export.atomic import atomic_output

    with rasterio.open(scene) as src:
        count = src.count
        # False colour from three bands spread over the spectrum.
        rgb = src.read([int(count * 0.75) + 1, count // 2 + 1, count // 6 + 1])
    rgb = np.moveaxis(rgb, 0, -1).astype(np.float64)
    low, high = np.percentile(rgb, (2, 98))
    rgb = np.clip((rgb - low) / max(high - low, 1e-12), 0, 1)

    panels = 2 + len(score_maps)
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 3.6))
    axes[0].imshow(rgb)
    axes[0].set_title('scene (false colour)')
    axes[1].imshow(truth, cmap='gray')
    axes[1].set_title('implanted targets')
    aucs = {m.method: m.auc for m in methods}
    for ax, (method, scores) in zip(axes[2:], score_maps.items(), strict=True):
        ax.imshow(scores, cmap='inferno')
        ax.set_title(f'{method.upper()}  AUC {aucs[method]:.3f}')
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100, format='png')
    plt.close(fig)
