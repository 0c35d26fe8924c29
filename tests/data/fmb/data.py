#!/usr/bin/env python3
"""Generate a tiny FMB copy in the public layout.

Layout: {train,test}/{Visible,Infrared,Label}/<name>.png and a colour-coded
{train,test}/color/<name>.png that the loader ignores. Images are 80 x 60
(the real ones are 800 x 600). One infrared image is stored as three equal
bands, the others as one band (both occur in copies of the dataset).
Scenes: sky (7) on top, road (1) below, a warm person (8) and a car (9).
"""

import os
import shutil

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 60, 80
SPLITS = {'train': ['00001', '00002', '00003'], 'test': ['00101', '00102']}


def scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    label = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    rgb = rng.normal(100, 6, (HEIGHT, WIDTH, 3))
    ir = rng.normal(70, 4, (HEIGHT, WIDTH))
    label[:15], rgb[:15] = 7, (120, 160, 230)
    label[40:], rgb[40:] = 1, (90, 90, 90)
    y, x = rng.integers(18, 30), rng.integers(5, 40)
    label[y : y + 8, x : x + 16] = 9
    rgb[y : y + 8, x : x + 16] = (20, 20, 150)
    y, x = rng.integers(16, 30), rng.integers(60, 72)
    label[y : y + 14, x : x + 5] = 8
    ir[y : y + 14, x : x + 5] = 230
    label[5:9, 2:4] = 0  # an unlabelled patch
    return (
        np.clip(rgb, 0, 255).astype(np.uint8),
        np.clip(ir, 0, 255).astype(np.uint8),
        label,
    )


def main() -> None:
    root = os.path.dirname(os.path.abspath(__file__))
    rng = np.random.default_rng(1)
    for split, names in SPLITS.items():
        shutil.rmtree(os.path.join(root, split), ignore_errors=True)
        for folder in ('Visible', 'Infrared', 'Label', 'color'):
            os.makedirs(os.path.join(root, split, folder))
        for k, name in enumerate(names):
            rgb, ir, label = scene(rng)
            file = f'{name}.png'
            Image.fromarray(rgb).save(os.path.join(root, split, 'Visible', file))
            ir_out = np.repeat(ir[..., None], 3, axis=-1) if k == 0 else ir
            Image.fromarray(ir_out).save(os.path.join(root, split, 'Infrared', file))
            Image.fromarray(label).save(os.path.join(root, split, 'Label', file))
            colour = (label[..., None] * np.array([17, 9, 5])).astype(np.uint8)
            Image.fromarray(colour).save(os.path.join(root, split, 'color', file))


if __name__ == '__main__':
    main()
