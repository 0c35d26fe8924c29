#!/usr/bin/env python3
"""Cross-tile merging of a dense scene: 100k detections on an 8k x 8k raster.

Simulates what :func:`~torchgeo_ext.pipelines.detection.detect_raster` hands to
:func:`~torchgeo_ext.pipelines.detection.merge_tile_detections` for a parking lot or
a city: ``--objects`` vehicles (about 20 x 9 px, random orientation) spread over an
8192 x 8192 raster, tiled at 512 px with 128 px overlap (the ``detect`` defaults).
Every tile that sees an object reports it, with a little localisation jitter; a
detection cut by an interior tile edge is clipped to the tile and flagged, as
``detect_raster`` does. The merge must keep each object once.

Each configuration runs in its own process so that its peak RSS (``ru_maxrss``) is
its own; time and peak are reported with the number of detections entering the
merge, axis-aligned and oriented, at several scene densities (memory should grow
linearly with the number of boxes).

Usage: python benchmarks/dense_merge.py [--objects 20000 50000 100000]
       [--output benchmarks/dense_merge.md]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import shapely
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZE, TILE, OVERLAP = 8192, 512, 128


def scene(objects: int, oriented: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """Tile detections of a dense synthetic scene (see the module docstring)."""
    from torchgeo_ext.ops.obb import obb_to_poly, poly_to_xyxy

    rng = np.random.default_rng(seed)
    centre = rng.uniform(20, SIZE - 20, (objects, 2))
    size = np.stack((rng.uniform(16, 24, objects), rng.uniform(7, 11, objects)), 1)
    angle = (
        rng.uniform(-math.pi / 2, math.pi / 2, objects) if oriented else 0 * size[:, 0]
    )
    obb = torch.from_numpy(np.column_stack((centre, size, angle)))
    polys = obb_to_poly(obb)
    hulls = poly_to_xyxy(polys).numpy()
    labels = rng.integers(0, 3, objects)
    step = TILE - OVERLAP
    starts = [*range(0, SIZE - TILE, step), SIZE - TILE]
    out_boxes, out_scores, out_labels, out_border = [], [], [], []
    for y0 in starts:
        for x0 in starts:
            x1, y1 = x0 + TILE, y0 + TILE
            seen = np.nonzero(
                (hulls[:, 2] > x0)
                & (hulls[:, 0] < x1)
                & (hulls[:, 3] > y0)
                & (hulls[:, 1] < y1)
            )[0]
            if not len(seen):
                continue
            jitter = rng.normal(0, 0.7, (len(seen), 8 if oriented else 4))
            inside = (
                (hulls[seen, 0] >= x0)
                & (hulls[seen, 1] >= y0)
                & (hulls[seen, 2] <= x1)
                & (hulls[seen, 3] <= y1)
            )
            clipped = np.column_stack(
                (
                    np.maximum(hulls[seen, 0], x0),
                    np.maximum(hulls[seen, 1], y0),
                    np.minimum(hulls[seen, 2], x1),
                    np.minimum(hulls[seen, 3], y1),
                )
            )
            if oriented:
                boxes = polys[seen].numpy().copy()
                # a cut object is reported as the rotated rectangle of its visible part
                part = ~inside
                if part.any():
                    shapes = shapely.polygons(boxes[part].reshape(-1, 4, 2))
                    visible = shapely.clip_by_rect(shapes, x0, y0, x1, y1)
                    rect = shapely.minimum_rotated_rectangle(visible)
                    # slivers (a corner just inside) collapse to lines: keep the hull part
                    fine = (shapely.get_type_id(rect) == 3) & (
                        shapely.get_num_coordinates(rect) == 5
                    )
                    hull_part = clipped[part][:, [0, 1, 2, 1, 2, 3, 0, 3]]
                    ring = shapely.get_exterior_ring(rect[fine])
                    corners = shapely.get_coordinates(ring).reshape(-1, 5, 2)[:, :4]
                    hull_part[fine] = corners.reshape(-1, 8)
                    boxes[part] = hull_part
                boxes += jitter
            else:
                boxes = clipped + jitter
                # a sliver's jitter must not turn its box inside out
                boxes = np.concatenate(
                    (
                        np.minimum(boxes[:, :2], boxes[:, 2:]),
                        np.maximum(boxes[:, :2], boxes[:, 2:]),
                    ),
                    1,
                )
            interior = (
                ((clipped[:, 0] <= x0) & (x0 > 0))
                | ((clipped[:, 1] <= y0) & (y0 > 0))
                | ((clipped[:, 2] >= x1) & (x1 < SIZE))
                | ((clipped[:, 3] >= y1) & (y1 < SIZE))
            )
            out_boxes.append(boxes)
            out_scores.append(rng.uniform(0.3, 1.0, len(seen)))
            out_labels.append(labels[seen])
            out_border.append(interior & ~inside)
    return {
        'boxes': torch.from_numpy(np.concatenate(out_boxes)).float(),
        'scores': torch.from_numpy(np.concatenate(out_scores)).float(),
        'labels': torch.from_numpy(np.concatenate(out_labels)),
        'at_border': torch.from_numpy(np.concatenate(out_border)),
    }


def run_one(objects: int, oriented: bool) -> dict[str, float]:
    """Build one scene and time its merge (in this process)."""
    from torchgeo_ext.pipelines.detection import merge_tile_detections

    torch.set_num_threads(1)
    data = scene(objects, oriented)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    keep = merge_tile_detections(
        data['boxes'], data['scores'], data['labels'], data['at_border'], 0.5, oriented
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        'objects': objects,
        'detections': int(data['boxes'].shape[0]),
        'cut': int(data['at_border'].sum()),
        'kept': int(keep.numel()),
        'seconds': seconds,
        'peak_mib': peak / 1024,
        'growth_mib': (peak - base) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--objects', type=int, nargs='+', default=[20000, 50000, 100000]
    )
    parser.add_argument(
        '--output', type=Path, default=ROOT / 'benchmarks' / 'dense_merge.md'
    )
    parser.add_argument('--child', nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        objects, oriented = int(args.child[0]), args.child[1] == 'oriented'
        print(json.dumps(run_one(objects, oriented)))
        return
    load = os.getloadavg()[0]
    lines = [
        '# Cross-tile merging of a dense scene',
        '',
        (
            f'Generated by `python benchmarks/dense_merge.py` (torch {torch.__version__}, '
            f'one thread, load average {load:.1f} at start). 8192 x 8192 raster, 512 px '
            f'tiles, 128 px overlap, IoU 0.5; each row in its own process.'
        ),
        '',
        '| boxes | objects | detections in | of which cut | kept | merge (s) | RSS growth (MiB) |',
        '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ]
    for kind in ('axis-aligned', 'oriented'):
        for objects in args.objects:
            result = subprocess.run(
                [sys.executable, __file__, '--child', str(objects), kind],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(result.stdout.strip().splitlines()[-1])
            lines.append(
                f'| {kind} | {r["objects"]:,} | {r["detections"]:,} | {r["cut"]:,} | '
                f'{r["kept"]:,} | {r["seconds"]:.2f} | {r["growth_mib"]:.0f} |'
            )
            print(lines[-1], flush=True)
    text = '\n'.join(lines) + '\n'
    args.output.write_text(text)
    print(text)


if __name__ == '__main__':
    main()
