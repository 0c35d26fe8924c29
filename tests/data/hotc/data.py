#!/usr/bin/env python3
"""Generate tiny HOTC 2020 and 2023/2024 copies in the challenge layouts.

Cubes are 12 x 16 px; mosaic frames 48 x 64 (4 x 4 VIS / RedNIR) and
60 x 80 (5 x 5 NIR), 16-bit PNG (one 2020 sequence 8-bit). A bright target
square moves by one pixel per frame; ground-truth files use every separator
style (tab with trailing tab, comma, space).
"""

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent
H, W = 12, 16
SEPARATORS = {'tab': '\t', 'comma': ',', 'space': ' '}


def boxes(n: int, start: tuple[int, int]) -> np.ndarray:
    x0, y0 = start
    return np.array([[x0 + t, y0 + (t % 2), 4, 3] for t in range(n)], dtype=np.int64)


def cube(
    bands: int, box: np.ndarray, t: int, peak: int, empty_last: bool
) -> np.ndarray:
    """bands x H x W cube: smooth background, target brighter and flat."""
    yy, xx = np.mgrid[0:H, 0:W]
    base = (200 + 10 * xx + 7 * yy + 3 * t)[None] * (1 + np.arange(bands) / bands)[
        :, None, None
    ]
    out = base.copy()
    x, y, w, h = box
    out[:, y : y + h, x : x + w] = (
        peak * (0.5 + 0.5 * np.linspace(1, 0, bands))[:, None, None]
    )
    if empty_last:
        out[-1] = 0
    return out


def mosaic(c: np.ndarray, factor: int) -> np.ndarray:
    """Inverse of the demosaicing formula: frame[f*i + k//f, f*j + k%f] = c[k, i, j]."""
    bands, h, w = c.shape
    frame = np.zeros((h * factor, w * factor), dtype=c.dtype)
    for k in range(bands):
        frame[k // factor :: factor, k % factor :: factor] = c[k]
    return frame


def write_gt(path: Path, rects: np.ndarray, style: str, trailing: bool = False) -> None:
    sep = SEPARATORS[style]
    lines = [sep.join(str(v) for v in r) + (sep if trailing else '') for r in rects]
    path.write_text('\n'.join(lines) + '\n')


def write_frames(
    folder: Path,
    kind: str,
    rects: np.ndarray,
    factor: int = 4,
    bits: int = 16,
    empty_last: bool = False,
    scale: int = 1,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for t, box in enumerate(rects):
        name = f'{t + 1:04d}'
        if kind == 'hsi':
            peak = 60000 if bits == 16 else 250
            c = cube(factor * factor, box, t, peak, empty_last)
            if bits == 8:
                c = c * 250 / c.max()
            dtype = np.uint16 if bits == 16 else np.uint8
            frame = mosaic(np.clip(c, 0, peak).astype(dtype), factor)
            Image.fromarray(frame).save(folder / f'{name}.png')
        else:
            c = cube(3, box, t, 255, False)
            rgb = np.clip(c / c.max() * 255, 0, 255).astype(np.uint8).transpose(1, 2, 0)
            if scale > 1:
                rgb = rgb.repeat(scale, 0).repeat(scale, 1)
            Image.fromarray(rgb).save(folder / f'{name}.jpg', quality=90)


def hotc2020() -> None:
    root = ROOT / 'hotc2020'
    shutil.rmtree(root, ignore_errors=True)
    specs = [
        ('train', 'ball', 4, (2, 3), 'tab', True, 16),
        ('train', 'car', 3, (8, 6), 'comma', False, 16),
        ('test', 'kangaroo', 3, (5, 2), 'space', False, 8),
    ]
    for split, name, n, start, style, trailing, bits in specs:
        rects = boxes(n, start)
        seq = root / split / name
        write_frames(seq / 'HSI', 'hsi', rects, bits=bits)
        write_gt(seq / 'HSI' / 'groundtruth_rect.txt', rects, style, trailing)
        write_frames(seq / 'HSI-FalseColor', 'fc', rects)
        write_gt(
            seq / 'HSI-FalseColor' / 'groundtruth_rect.txt', rects, style, trailing
        )
        write_frames(seq / 'RGB', 'fc', rects, scale=2)  # RGB camera: other size
        write_gt(seq / 'RGB' / 'groundtruth_rect.txt', rects * 2, style, trailing)


def hotc2023() -> None:
    root = ROOT / 'hotc2023'
    shutil.rmtree(root, ignore_errors=True)
    cameras = [('VIS', 4, False), ('NIR', 5, False), ('RedNIR', 4, True)]
    specs = [
        ('training', 'bus', 3, (1, 1), 'tab', True),
        ('training', 'duck', 3, (9, 7), 'comma', False),
        ('validation', 'rider', 2, (4, 4), 'space', False),
        ('ranking', 'kite', 3, (6, 5), 'tab', True),
    ]
    for split, name, n, start, style, trailing in specs:
        rects = boxes(n, start)
        for camera, factor, empty in cameras:
            if split == 'ranking' and camera != 'VIS':
                continue
            for suffix, kind in (('', 'hsi'), ('-FalseColor', 'fc')):
                folder = (
                    root / split / f'HSI-{camera}{suffix}' / f'{camera.lower()}-{name}'
                )
                write_frames(folder, kind, rects, factor=factor, empty_last=empty)
                if split == 'ranking':
                    write_gt(folder / 'init_rect.txt', rects[:1], style, trailing)
                else:
                    write_gt(folder / 'groundtruth_rect.txt', rects, style, trailing)


if __name__ == '__main__':
    hotc2020()
    hotc2023()
