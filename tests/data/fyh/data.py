#!/usr/bin/env python3
"""Generate the fake FYH data: raw FY-4A / Himawari files and ready .mat tiles.

Raw layout (real names, tiny extents):

    raw/FY4A/20190807/FY4A-_AGRI--_N_REGC_1047E_L1-_FDI-_MULT_NOM_<start>_<end>_4000M_V0001.HDF
    raw/Himawari/201908/07/04/NC_H08_20190807_HHMM_L2CLP010_FLDK.02401_02401.nc

* the good scan (04:08:00-04:12:59.999) is a REGC file whose full-disk lines
  and columns cover grid tiles 84 and 85 (5N..10N, 105E..115E). Counts:
  channel 1 = full-disk line, channel 2 = full-disk column, others a ramp.
  Tables: channels 1-6 ``n / 4096``, channels 7-14 ``150 + n / 16`` kelvin.
* ``..._050100_050459_...``: valid file, but no Himawari product in its window.
* ``..._041000_041459_..._V0001.HDF`` with NOMChannel14 missing.
* ``..._040900_041359_...``: CALChannel05 has 10 entries (counts reach 4095).
* Himawari 04:10 (paired), 04:00 and 04:20 (outside every window): CLTYPE on
  0.05 degree latitude 12..3, longitude 100..120, classes ``(row + col) % 11``
  mapped so that 10 appears as 10 (unknown) and some pixels as 255 (fill):
  tile 84 holds exactly 1250 fill/unknown pixels (kept), tile 85 holds 1251
  (dropped).

Tiles: ``mattrain``/``matmasktrain`` (3 tiles of 2 scenes), ``mattest``/
``matmasktest`` (2 tiles), float64 100 x 100 x 14 in [0, 1] and uint8 masks.
"""

import os
import shutil

import h5py
import numpy as np
import scipy.io
import xarray as xr

from torchgeo_ext.converters.fyh import geos_line_column

ROOT = os.path.dirname(os.path.abspath(__file__))
RAW = os.path.join(ROOT, 'raw')
PREFIX = 'FY4A-_AGRI--_N_REGC_1047E_L1-_FDI-_MULT_NOM_'

GOOD = f'{PREFIX}20190807040800_20190807041259_4000M_V0001.HDF'
UNPAIRED = f'{PREFIX}20190807050100_20190807050459_4000M_V0001.HDF'
NO_VARIABLE = f'{PREFIX}20190807041000_20190807041459_4000M_V0001.HDF'
BAD_TABLE = f'{PREFIX}20190807040900_20190807041359_4000M_V0001.HDF'

# File attributes as real FY-4A AGRI L1 files carry them (values of this scan).
DEA_KM = 6378.14
FLATTENING = 298.257223563
SAT_HEIGHT = 35786000.0


def string_attr(text: str) -> np.bytes_:
    return np.bytes_(text)


def good_region() -> tuple[int, int, int, int]:
    """Full-disk lines/columns covering 4.9..10.1N, 104.9..115.1E (+2 px)."""
    lat, lon = np.meshgrid(np.linspace(4.9, 10.1, 60), np.linspace(104.9, 115.1, 120))
    a = DEA_KM * 1e3
    b = a * (1 - 1 / FLATTENING)
    line, col = geos_line_column(lat, lon, 4000, 104.7, a, b, SAT_HEIGHT)
    return (
        int(np.floor(line.min())) - 2,
        int(np.ceil(line.max())) + 2,
        int(np.floor(col.min())) - 2,
        int(np.ceil(col.max())) + 2,
    )


def write_agri(
    path: str,
    start: str,
    end: str,
    lines: tuple[int, int],
    pixels: tuple[int, int],
    skip_variable: str | None = None,
    short_table: str | None = None,
) -> None:
    line0, line1 = lines
    pixel0, pixel1 = pixels
    rows, cols = line1 - line0 + 1, pixel1 - pixel0 + 1
    line, col = np.meshgrid(
        np.arange(line0, line1 + 1), np.arange(pixel0, pixel1 + 1), indexing='ij'
    )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, 'w') as f:
        f.attrs['Observing Beginning Date'] = string_attr(start[:10])
        f.attrs['Observing Beginning Time'] = string_attr(start[11:])
        f.attrs['Observing Ending Date'] = string_attr(end[:10])
        f.attrs['Observing Ending Time'] = string_attr(end[11:])
        f.attrs['NOMCenterLon'] = np.float32(104.7)
        f.attrs['dEA'] = np.float32(DEA_KM)
        f.attrs['dObRecFlat'] = np.float64(FLATTENING)
        f.attrs['NOMSatHeight'] = np.float64(SAT_HEIGHT)
        f.attrs['Begin Line Number'] = np.int32(line0)
        f.attrs['End Line Number'] = np.int32(line1)
        f.attrs['Begin Pixel Number'] = np.int32(pixel0)
        f.attrs['End Pixel Number'] = np.int32(pixel1)
        f.attrs['RegLength'] = np.int32(rows)
        f.attrs['RegWidth'] = np.int32(cols)
        for i in range(1, 15):
            if i == 1:
                counts = line
            elif i == 2:
                counts = col
            else:
                counts = (line + 2 * col + 37 * i) % 4096
            counts = counts.astype(np.uint16)
            counts[0, 0] = 65535  # one fill pixel per channel
            name = f'NOMChannel{i:02d}'
            if name != skip_variable:
                ds = f.create_dataset(
                    name, data=counts, compression='gzip', shuffle=True
                )
                ds.attrs['FillValue'] = np.uint16(65535)
                ds.attrs['valid_range'] = np.array([0, 4095], dtype=np.uint16)
            n = np.arange(4096, dtype=np.float32)
            table = n / 4096 if i <= 6 else 150 + n / 16
            name = f'CALChannel{i:02d}'
            if name == short_table:
                table = table[:10]
            ds = f.create_dataset(
                name, data=table.astype(np.float32), compression='gzip', shuffle=True
            )
            ds.attrs['FillValue'] = np.float32(-9999.0)


def write_himawari(path: str, fill_tile_84: int, fill_tile_85: int) -> None:
    lat = np.round(12 - 0.05 * np.arange(181), 2)
    lon = np.round(100 + 0.05 * np.arange(401), 2)
    rr, cc = np.meshgrid(np.arange(lat.size), np.arange(lon.size), indexing='ij')
    cltype = ((rr + cc) % 10).astype(np.uint8)
    # Grid rows 800..899 are latitudes 10..5.05: Himawari rows 40..219 / 0.05.
    # Tiles 84 / 85: grid rows 800..899, columns 400..499 / 500..599.
    row0 = 40  # latitude 10.0
    col84, col85 = 100, 200  # longitude 105.0, 110.0

    def fill(col0: int, n: int) -> None:
        window = np.zeros((100, 100), dtype=bool)
        window.ravel()[:n] = True
        block = cltype[row0 : row0 + 100, col0 : col0 + 100]
        # Alternate 255 (fill) and 10 (unknown): both become class 10.
        block[window & (np.indices((100, 100)).sum(0) % 2 == 0)] = 255
        block[window & (np.indices((100, 100)).sum(0) % 2 == 1)] = 10

    fill(col84, fill_tile_84)
    fill(col85, fill_tile_85)
    ds = xr.Dataset(
        {'CLTYPE': (('latitude', 'longitude'), cltype)},
        coords={
            'latitude': lat.astype(np.float32),
            'longitude': lon.astype(np.float32),
        },
    )
    ds['CLTYPE'].attrs['long_name'] = 'Cloud Type under ISCCP Cloud Type Classification'
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ds.to_netcdf(path, engine='h5netcdf', encoding={'CLTYPE': {'zlib': True}})


def write_tiles(split: str, names: list[str], seed: int) -> None:
    rng = np.random.default_rng(seed)
    for name in names:
        # Smooth ramps with a random phase per channel: realistic range, compresses.
        r, c, ch = np.indices((100, 100, 14))
        phase = rng.integers(0, 16, 14)
        image = ((r // 4 + c // 4 + phase[ch]) % 16) / 15
        mask = rng.integers(0, 11, (100, 100), dtype=np.uint8)
        for folder, data in ((f'mat{split}', image), (f'matmask{split}', mask)):
            os.makedirs(os.path.join(ROOT, folder), exist_ok=True)
            scipy.io.savemat(
                os.path.join(ROOT, folder, name), {'data': data}, do_compression=True
            )


def main() -> None:
    for folder in ('raw', 'mattrain', 'matmasktrain', 'mattest', 'matmasktest'):
        shutil.rmtree(os.path.join(ROOT, folder), ignore_errors=True)
    line0, line1, pixel0, pixel1 = good_region()
    day = os.path.join(RAW, 'FY4A', '20190807')
    write_agri(
        os.path.join(day, GOOD),
        '2019-08-07T04:08:00.000',
        '2019-08-07T04:12:59.999',
        (line0, line1),
        (pixel0, pixel1),
    )
    tiny = ((1200, 1201), (1400, 1401))
    write_agri(
        os.path.join(day, UNPAIRED),
        '2019-08-07T05:01:00.000',
        '2019-08-07T05:04:59.999',
        *tiny,
    )
    write_agri(
        os.path.join(day, NO_VARIABLE),
        '2019-08-07T04:10:00.000',
        '2019-08-07T04:14:59.999',
        *tiny,
        skip_variable='NOMChannel14',
    )
    write_agri(
        os.path.join(day, BAD_TABLE),
        '2019-08-07T04:09:00.000',
        '2019-08-07T04:13:59.999',
        *tiny,
        short_table='CALChannel05',
    )
    hour = os.path.join(RAW, 'Himawari', '201908', '07', '04')
    for hhmm in ('0400', '0410', '0420'):
        write_himawari(
            os.path.join(hour, f'NC_H08_20190807_{hhmm}_L2CLP010_FLDK.02401_02401.nc'),
            1250,
            1251,
        )
    stem_a = f'{PREFIX}20190807040000_20190807041459_4000M_V0001'
    stem_b = f'{PREFIX}20190807060000_20190807061459_4000M_V0001'
    write_tiles('train', [f'{stem_a}_0.mat', f'{stem_a}_45.mat', f'{stem_b}_89.mat'], 0)
    write_tiles('test', [f'{stem_b}_11.mat', f'{stem_a}_84.mat'], 1)


if __name__ == '__main__':
    main()
