#!/usr/bin/env python3
"""Generate a tiny MFNet copy in the public layout.

Layout: images/<name>.png (4-band PNG: RGB + thermal), labels/<name>.png (one
band of class ids 0-8) and the split lists train.txt, val.txt, test.txt,
test_day.txt, test_night.txt (one name per line, no extension). Images are
64 x 48 (the real ones are 640 x 480; the loader reads sizes from the files).
Quirks reproduced: a blank trailing line and trailing spaces in a list.
Scenes are learnable: a warm rectangle in the thermal band is a person (2), a
red rectangle in RGB a car (1), the lower band of the image a curve (4).
"""

import os
import shutil

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 48, 64
SPLITS = {
    'train': ['00001D', '00002D', '00003N', '00004N'],
    'val': ['00005D', '00006N'],
    'test': ['00007D', '00008N'],
}


def scene(rng: np.random.Generator, night: bool) -> tuple[np.ndarray, np.ndarray]:
    label = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    rgb = rng.normal(90 if not night else 25, 8, (HEIGHT, WIDTH, 3))
    thermal = rng.normal(60, 5, (HEIGHT, WIDTH))
    label[38:] = 4
    rgb[38:] += 30
    y, x = rng.integers(4, 20), rng.integers(2, 20)
    label[y : y + 12, x : x + 18] = 1
    rgb[y : y + 12, x : x + 18] = (200, 40, 40) if not night else (50, 20, 20)
    thermal[y : y + 12, x : x + 18] += 40
    y, x = rng.integers(4, 22), rng.integers(42, 56)
    label[y : y + 14, x : x + 6] = 2
    thermal[y : y + 14, x : x + 6] = 220
    if not night:
        rgb[y : y + 14, x : x + 6] = (40, 160, 60)
    image = np.concatenate([rgb, thermal[..., None]], axis=-1)
    return np.clip(image, 0, 255).astype(np.uint8), label


def main() -> None:
    root = os.path.dirname(os.path.abspath(__file__))
    for folder in ('images', 'labels'):
        shutil.rmtree(os.path.join(root, folder), ignore_errors=True)
        os.makedirs(os.path.join(root, folder))
    rng = np.random.default_rng(0)
    for names in SPLITS.values():
        for name in names:
            image, label = scene(rng, name.endswith('N'))
            Image.fromarray(image, mode='RGBA').save(
                os.path.join(root, 'images', f'{name}.png')
            )
            Image.fromarray(label).save(os.path.join(root, 'labels', f'{name}.png'))
    lists = dict(SPLITS)
    lists['test_day'] = [n for n in SPLITS['test'] if n.endswith('D')]
    lists['test_night'] = [n for n in SPLITS['test'] if n.endswith('N')]
    for split, names in lists.items():
        with open(os.path.join(root, f'{split}.txt'), 'w') as f:
            # the real lists end with a newline; one here has trailing spaces too
            f.write(''.join(f'{n}  \n' if split == 'val' else f'{n}\n' for n in names))
            f.write('\n')


if __name__ == '__main__':
    main()
