#!/usr/bin/env python3
"""Generate a tiny SAR-AIRcraft-1.0 copy in the layout of the release.

JPEGImages/<id>.jpg (grey JPEGs with three identical channels, of several sizes: 80,
100 and 120 px here for the release's 800 to 1500), Annotations/<id>.xml (Pascal VOC,
<name> one of the seven types, <bndbox>), ImageSets/Main/{train,val,test}.txt.

Reproduced quirks: a blank line at the end of a list, an aircraft crossing the image
border (clipped), a name that is not one of the seven types (dropped and counted).
"""

import os
import shutil

import numpy as np
from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.abspath(__file__))
CLASSES = ['A220', 'A320/321', 'A330', 'ARJ21', 'Boeing737', 'Boeing787', 'other']
SPLITS = {'train': ['1', '2', '3', '4'], 'val': ['5', '6'], 'test': ['7', '8', '9']}
SIZES = [80, 100, 120]


def xml(image_id: str, size: int, objects: list[tuple[str, list[int]]]) -> str:
    body = ''
    for name, (x0, y0, x1, y1) in objects:
        body += (
            f'\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n'
            '\t\t<truncated>0</truncated>\n\t\t<difficult>0</difficult>\n'
            f'\t\t<bndbox>\n\t\t\t<xmin>{x0}</xmin>\n\t\t\t<ymin>{y0}</ymin>\n'
            f'\t\t\t<xmax>{x1}</xmax>\n\t\t\t<ymax>{y1}</ymax>\n\t\t</bndbox>\n\t</object>\n'
        )
    return (
        f'<annotation>\n\t<folder>JPEGImages</folder>\n\t<filename>{image_id}.jpg</filename>\n'
        f'\t<size>\n\t\t<width>{size}</width>\n\t\t<height>{size}</height>\n\t\t<depth>3</depth>\n'
        f'\t</size>\n\t<segmented>0</segmented>\n{body}</annotation>\n'
    )


def main() -> None:
    rng = np.random.default_rng(0)
    for sub in ('JPEGImages', 'Annotations', 'ImageSets'):
        shutil.rmtree(os.path.join(ROOT, sub), ignore_errors=True)
    for sub in ('JPEGImages', 'Annotations', os.path.join('ImageSets', 'Main')):
        os.makedirs(os.path.join(ROOT, sub))
    k = 0
    for split, ids in SPLITS.items():
        for image_id in ids:
            size = SIZES[k % len(SIZES)]
            ground = rng.gamma(2.0, 15.0, (size, size)).clip(0, 255).astype(np.uint8)
            img = Image.fromarray(ground)
            draw = ImageDraw.Draw(img)
            objects = []
            for j in range(1 + k % 3):
                x0, y0 = (int(v) for v in rng.integers(5, size - 25, 2))
                w, h = (int(v) for v in rng.integers(10, 20, 2))
                objects.append(
                    (CLASSES[(k + j) % len(CLASSES)], [x0, y0, x0 + w, y0 + h])
                )
            if image_id == '2':
                objects.append(
                    ('Boeing737', [size - 8, 30, size + 6, 44])
                )  # crosses the border
                objects.append(
                    ('Boeing747', [10, 10, 22, 24])
                )  # not a SAR-AIRcraft type
            for _, (x0, y0, x1, y1) in objects:
                # a cross: fuselage and wings
                draw.rectangle(
                    [(x0 + x1) // 2 - 1, y0, (x0 + x1) // 2 + 1, y1], fill=240
                )
                draw.rectangle(
                    [x0, (y0 + y1) // 2 - 1, x1, (y0 + y1) // 2 + 1], fill=240
                )
            img.convert('RGB').save(
                os.path.join(ROOT, 'JPEGImages', f'{image_id}.jpg'), quality=90
            )
            with open(os.path.join(ROOT, 'Annotations', f'{image_id}.xml'), 'w') as f:
                f.write(xml(image_id, size, objects))
            k += 1
        with open(os.path.join(ROOT, 'ImageSets', 'Main', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(ids) + ('\n\n' if split == 'test' else '\n'))


if __name__ == '__main__':
    main()
