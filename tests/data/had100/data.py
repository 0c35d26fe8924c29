#!/usr/bin/env python3
"""Generate a tiny HAD100 copy in all three layouts (raw ENVI, processed, mat).

Raw: hand-written ENVI headers as the AVIRIS products have them (UTM map info,
one rotated grid, coordinate system string, wavelengths, data ignore value),
BIL and BIP, float32 and int16, with -9999 and 1e-34 no-data pixels. Scenes
are 8 x 8 (one 8 x 6, one 6 x 6) pixels with the full 425 / 224 bands so that the
official band selection applies unchanged.
"""

import shutil
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

ROOT = Path(__file__).resolve().parent
RNG = np.random.default_rng(0)

UTM11N_WKT = (
    'PROJCS["WGS_1984_UTM_Zone_11N",GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",'
    'SPHEROID["WGS_1984",6378137.0,298.257223563]],PRIMEM["Greenwich",0.0],'
    'UNIT["Degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],'
    'PARAMETER["False_Easting",500000.0],PARAMETER["False_Northing",0.0],'
    'PARAMETER["Central_Meridian",-117.0],PARAMETER["Scale_Factor",0.9996],'
    'PARAMETER["Latitude_Of_Origin",0.0],UNIT["Meter",1.0]]'
)

# name, folder, bands, lines, samples, interleave, dtype, rotation, nodata kind
RAW = [
    (
        'ang20170821t183707_1',
        'aviris_ng_target',
        425,
        8,
        8,
        'bil',
        'float32',
        0.0,
        'ng',
    ),
    (
        'ang20190915t201455_2',
        'aviris_ng_target',
        425,
        8,
        6,
        'bil',
        'float32',
        75.0,
        'ng',
    ),
    (
        'ang20191004t185054_13',
        'aviris_ng_normal',
        425,
        8,
        8,
        'bil',
        'float32',
        0.0,
        'both',
    ),
    (
        'ang20191004t185054_14',
        'aviris_ng_normal',
        425,
        6,
        6,
        'bil',
        'float32',
        0.0,
        'none',
    ),
    ('f170507t01p00r10_1', 'aviris_normal', 224, 8, 8, 'bil', 'int16', 0.0, 'ng'),
    ('f090710t01p00r10_10', 'aviris_normal', 224, 8, 8, 'bip', 'float32', 0.0, 'none'),
]
ENVI_TYPES = {'int16': 2, 'float32': 4}
#: (x, y, easting, northing) tie point and pixel size used for every scene.
TIE = (1.0, 1.0, 724522.127, 4074620.759)
PIXEL = 5.0


def spectra(bands: int, lines: int, samples: int) -> np.ndarray:
    """Smooth background spectra, H x W x C, values in about 0.05..0.6."""
    base = 0.3 + 0.2 * np.sin(np.linspace(0, 3 * np.pi, bands))
    scale = RNG.uniform(0.8, 1.2, size=(lines, samples, 1))
    noise = RNG.normal(0, 0.01, size=(lines, samples, bands))
    return (base * scale + noise).astype(np.float32)


def anomaly_mask(lines: int, samples: int, seed: int) -> np.ndarray:
    mask = np.zeros((lines, samples), dtype=np.uint8)
    r, c = 2 + seed % 3, 3 + seed % 2
    mask[r : r + 2, c : c + 2] = 1
    return mask


def write_envi(
    folder: Path,
    name: str,
    cube: np.ndarray,
    interleave: str,
    dtype: str,
    rotation: float,
    wavelengths: np.ndarray,
) -> None:
    lines, samples, bands = cube.shape
    data = cube.astype(dtype)
    if interleave == 'bil':
        raw = np.transpose(data, (0, 2, 1))  # line, band, sample
    elif interleave == 'bip':
        raw = data  # line, sample, band
    else:
        raw = np.transpose(data, (2, 0, 1))
    raw.astype(data.dtype.newbyteorder('<')).tofile(folder / f'{name}.dat')
    rot = f' , rotation={rotation:.8f}' if rotation else ''
    wl = ' , '.join(f'{w:.6f}' for w in wavelengths)
    header = (
        'ENVI\n'
        f'description = {{\n  {name} (torchgeo-ext fake data)}}\n'
        f'samples = {samples}\nlines   = {lines}\nbands   = {bands}\n'
        'header offset = 0\nfile type = ENVI Standard\n'
        f'data type = {ENVI_TYPES[dtype]}\ninterleave = {interleave}\n'
        'byte order = 0\n'
        f'map info = {{ UTM , {TIE[0]:.3f} , {TIE[1]:.3f} , {TIE[2]:.3f} , '
        f'{TIE[3]:.3f} , {PIXEL:.10e} , {PIXEL:.10e} , 11 , North , WGS-84 , '
        f'units=Meters{rot} }}\n'
        f'coordinate system string = {{{UTM11N_WKT}}}\n'
        'wavelength units = Nanometers\n'
        f'wavelength = {{ {wl} }}\n'
        'data ignore value = -9999\n'
    )
    (folder / f'{name}.hdr').write_text(header)


def raw_layout() -> None:
    for sub in ('data', 'gt'):
        shutil.rmtree(ROOT / sub, ignore_errors=True)
    for i, (name, folder, bands, lines, samples, inter, dtype, rot, nd) in enumerate(
        RAW
    ):
        out = ROOT / 'data' / folder
        out.mkdir(parents=True, exist_ok=True)
        cube = spectra(bands, lines, samples)
        if folder == 'aviris_ng_target':
            mask = anomaly_mask(lines, samples, i)
            cube[mask == 1] = np.linspace(0.6, 0.1, bands, dtype=np.float32)
            gt_dir = ROOT / 'gt' / 'aviris_ng_gt'
            gt_dir.mkdir(parents=True, exist_ok=True)
            scipy.io.savemat(gt_dir / f'{name}.mat', {'gt': mask.astype(np.uint8)})
        if dtype == 'int16':
            cube = np.round(cube * 10000)
        if nd in ('ng', 'both'):
            cube[0, 0, :] = -9999.0  # a corner pixel outside the swath
        if nd == 'both':
            cube[lines - 1, samples - 1, :] = 1e-34
            cube[lines - 1, 0, 5] = 1e-34  # a single bad value in one band
        start = 376.9 if bands == 425 else 365.9
        step = 5.01 if bands == 425 else 9.94
        write_envi(out, name, cube, inter, dtype, rot, start + step * np.arange(bands))


PROCESSED_BANDS = 32


def processed_layout() -> None:
    for sub in ('train', 'test', 'ground_truth'):
        shutil.rmtree(ROOT / sub, ignore_errors=True)
    names = {
        ('train', 'aviris_ng'): ['ang20191004t185054_13_0', 'ang20191004t185054_13_1'],
        ('train', 'aviris'): ['f170507t01p00r10_1_0', 'f170507t01p00r10_1_1'],
        ('test', 'aviris_ng'): ['ang20170821t183707_1', 'ang20190915t201455_2'],
    }
    for (split, sensor), stems in names.items():
        out = ROOT / split / sensor
        out.mkdir(parents=True)
        for i, stem in enumerate(stems):
            cube = spectra(PROCESSED_BANDS, 8, 8)
            if split == 'test':
                mask = anomaly_mask(8, 8, i)
                cube[mask == 1] = np.linspace(0.6, 0.1, PROCESSED_BANDS)
                gt = ROOT / 'ground_truth' / sensor
                gt.mkdir(parents=True, exist_ok=True)
                png = np.zeros((8, 8, 3), dtype=np.uint8)
                png[..., 1] = mask * 255
                Image.fromarray(png).save(gt / f'{stem}.png')
            np.save(out / f'{stem}.npy', cube)


def mat_layout() -> None:
    shutil.rmtree(ROOT / 'mat', ignore_errors=True)
    for folder, anomalous in (('without_anomaly', False), ('with_anomaly', True)):
        out = ROOT / 'mat' / folder
        out.mkdir(parents=True)
        for i in range(2):
            cube = spectra(PROCESSED_BANDS, 8, 8).astype(np.float64)
            mask = anomaly_mask(8, 8, i) if anomalous else np.zeros((8, 8), np.uint8)
            cube[mask == 1] = np.linspace(0.6, 0.1, PROCESSED_BANDS)
            scipy.io.savemat(out / f'{i + 1}.mat', {'data': cube, 'map': mask})


if __name__ == '__main__':
    raw_layout()
    processed_layout()
    mat_layout()
