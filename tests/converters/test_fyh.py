"""Tests of the FYH builder: AGRI calibration, navigation, pairing, tiling, CLI."""

import datetime as dt
import math
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
import torch
import xarray as xr

from torchgeo_ext.cli import main
from torchgeo_ext.converters.fyh import (
    AGRIScene,
    BuildReport,
    build_fyh,
    calibrate,
    find_himawari,
    geos_line_column,
    grid_coordinates,
    iter_tiles,
    normalise,
    pair_product,
    read_agri,
    read_cltype,
    regrid_agri,
)
from torchgeo_ext.datasets.fyh import (
    FYH,
    FYHScenes,
    grid_transform,
    tile_bounds,
    tile_transform,
)
from torchgeo_ext.errors import InvalidInputError, MissingInputError

DATA = Path(__file__).parents[1] / 'data' / 'fyh'
RAW = DATA / 'raw'
PREFIX = 'FY4A-_AGRI--_N_REGC_1047E_L1-_FDI-_MULT_NOM_'
GOOD = (
    RAW / 'FY4A' / '20190807' / f'{PREFIX}20190807040800_20190807041259_4000M_V0001.HDF'
)
GOOD_STEM = GOOD.stem
HIMAWARI_0410 = (
    RAW
    / 'Himawari'
    / '201908'
    / '07'
    / '04'
    / 'NC_H08_20190807_0410_L2CLP010_FLDK.02401_02401.nc'
)


def cgms_line_column(
    lat: np.ndarray,
    lon: np.ndarray,
    a: float,
    b: float,
    distance: float,
    sub_lon: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The NSMC/CGMS forward navigation formulas, written out independently (4 km)."""
    coff = loff = 1373.5
    cfac = lfac = 10233137.0
    phi = np.radians(lat)
    lam = np.radians(lon - sub_lon)
    phi_e = np.arctan(b**2 / a**2 * np.tan(phi))
    re = b / np.sqrt(1 - (a**2 - b**2) / a**2 * np.cos(phi_e) ** 2)
    r1 = distance - re * np.cos(phi_e) * np.cos(lam)
    r2 = -re * np.cos(phi_e) * np.sin(lam)
    r3 = re * np.sin(phi_e)
    rn = np.sqrt(r1**2 + r2**2 + r3**2)
    x = np.degrees(np.arctan(-r2 / r1))
    y = np.degrees(np.arcsin(-r3 / rn))
    return loff + y * lfac / 2**16, coff + x * cfac / 2**16


# ----------------------------------------------------------------- navigation


def test_geos_subsatellite_point_is_disk_centre() -> None:
    line, col = geos_line_column(np.array([0.0]), np.array([104.7]))
    assert line[0] == pytest.approx(1373.5)
    assert col[0] == pytest.approx(1373.5)


def test_geos_matches_cgms_formulas() -> None:
    lat = np.array([50.0, 5.05, 30.0, -20.0, 10.0, 45.0])
    lon = np.array([85.0, 134.95, 120.0, 90.0, 104.7, 104.7])
    line, col = geos_line_column(lat, lon)
    a, b = 6378137.0, 6356752.3
    exp_line, exp_col = cgms_line_column(lat, lon, a, b, 42164000.0, 104.7)
    np.testing.assert_allclose(line, exp_line, atol=1e-6)
    np.testing.assert_allclose(col, exp_col, atol=1e-6)
    # North is up (smaller line numbers), east is right; symmetric about the SSP.
    assert line[0] < line[1]
    assert col[0] < col[1]
    sym_line, sym_col = geos_line_column(
        np.array([-30.0]), np.array([2 * 104.7 - 120.0])
    )
    assert sym_line[0] == pytest.approx(2 * 1373.5 - line[2])
    assert sym_col[0] == pytest.approx(2 * 1373.5 - col[2])


def test_geos_invisible_point_is_nan() -> None:
    line, col = geos_line_column(np.array([0.0]), np.array([-75.3]))
    assert math.isnan(line[0])
    assert math.isnan(col[0])


def test_grid_coordinates() -> None:
    lat, lon = grid_coordinates()
    assert lat.shape == (900,)
    assert lon.shape == (1000,)
    assert lat[0] == pytest.approx(50.0)
    assert lat[-1] == pytest.approx(5.05)
    assert lon[0] == pytest.approx(85.0)
    assert lon[-1] == pytest.approx(134.95)
    # Pixel centres agree with the grid transform.
    x, y = grid_transform() @ (999.5, 899.5)
    assert (x, y) == (pytest.approx(134.95), pytest.approx(5.05))


# ---------------------------------------------------------------- calibration


def test_calibrate_lookup_fill_and_range() -> None:
    table = np.arange(8, dtype=np.float32) * 2 + 100
    counts = np.array([[0, 3, 7], [65535, 6, 5]], dtype=np.uint16)
    out = calibrate(counts, table, fill_value=65535, valid_range=(0, 6))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0, :2], [100, 106])
    assert math.isnan(out[0, 2])  # above valid_range
    assert math.isnan(out[1, 0])  # fill
    np.testing.assert_array_equal(out[1, 1:], [112, 110])


def test_calibrate_short_table() -> None:
    with pytest.raises(InvalidInputError, match='has 10 entries but counts reach 4095'):
        calibrate(np.zeros((2, 2)), np.zeros(10), 65535, (0, 4095), name='CALChannel05')
    # Without a valid range the largest count decides.
    with pytest.raises(InvalidInputError, match='at least 13 entries'):
        calibrate(np.array([[12]]), np.zeros(10))


def test_calibrate_table_not_1d() -> None:
    with pytest.raises(InvalidInputError, match='expected 1-D'):
        calibrate(np.zeros((2, 2)), np.zeros((3, 3)))


def test_read_agri() -> None:
    scene = read_agri(str(GOOD))
    assert scene.stem == GOOD_STEM
    assert scene.start == dt.datetime(2019, 8, 7, 4, 8)
    assert scene.end == dt.datetime(2019, 8, 7, 4, 12, 59, 999000)
    assert scene.data.shape[0] == 14
    assert scene.data.dtype == np.float32
    rows, _cols = scene.data.shape[1:]
    with h5py.File(GOOD) as f:
        assert int(f.attrs['End Line Number']) - scene.begin_line + 1 == rows
        counts = np.asarray(f['NOMChannel09'])
    # Channel 1 counts are the full-disk line, table n / 4096.
    np.testing.assert_array_equal(
        scene.data[0, 1:, 0] * 4096,
        np.arange(scene.begin_line + 1, scene.begin_line + rows),
    )
    # Channel 9 (emissive): 150 + n / 16 kelvin.
    np.testing.assert_allclose(scene.data[8, 1:, 1:], 150 + counts[1:, 1:] / 16)
    assert np.isnan(scene.data[:, 0, 0]).all()  # fill counts
    assert scene.a == pytest.approx(6378140.0)
    assert scene.b == pytest.approx(6378140.0 * (1 - 1 / 298.257223563))
    assert scene.h == pytest.approx(35786000.0)


def write_agri(
    path: Path, attrs: dict[str, object], n: int = 14, lut: int = 4096
) -> None:
    with h5py.File(path, 'w') as f:
        for key, value in attrs.items():
            f.attrs[key] = value
        for i in range(1, n + 1):
            ds = f.create_dataset(
                f'NOMChannel{i:02d}', data=np.full((3, 4), i, np.uint16)
            )
            ds.attrs['FillValue'] = np.uint16(65535)
            f.create_dataset(
                f'CALChannel{i:02d}', data=np.arange(lut, dtype=np.float32)
            )


def test_read_agri_times_from_file_name(tmp_path: Path) -> None:
    path = tmp_path / f'{PREFIX}20200101120000_20200101121459_4000M_V0001.HDF'
    write_agri(path, {})
    scene = read_agri(str(path))
    assert scene.start == dt.datetime(2020, 1, 1, 12)
    assert scene.end == dt.datetime(2020, 1, 1, 12, 14, 59)
    assert scene.begin_line == 0
    assert scene.sub_lon == pytest.approx(104.7)
    np.testing.assert_array_equal(scene.data[4], 5)


def test_read_agri_file_latlon(tmp_path: Path) -> None:
    path = tmp_path / f'{PREFIX}20200101120000_20200101121459_4000M_V0001.HDF'
    write_agri(path, {})
    lat, lon = np.meshgrid(
        30 - 0.05 * np.arange(3), 120 + 0.05 * np.arange(4), indexing='ij'
    )
    with h5py.File(path, 'a') as f:
        f['Latitude'] = lat
        f['Longitude'] = lon
    scene = read_agri(str(path))
    assert scene.lat is not None
    np.testing.assert_array_equal(scene.lat, lat)
    grid = regrid_agri(scene)
    np.testing.assert_array_equal(grid[6, 400:403, 700:704], 7)
    assert int(np.isfinite(grid[6]).sum()) == 12
    with h5py.File(path, 'a') as f:
        del f['Longitude']
        f['Longitude'] = lon[:2]
    with pytest.raises(
        InvalidInputError,
        match=r'Longitude \(2, 4\) do not match the channels \(3, 4\)',
    ):
        read_agri(str(path))


def test_read_agri_no_times(tmp_path: Path) -> None:
    path = tmp_path / 'scan.HDF'
    write_agri(path, {})
    with pytest.raises(InvalidInputError, match='no observation times'):
        read_agri(str(path))


def test_read_agri_missing_variables() -> None:
    path = (
        RAW
        / 'FY4A'
        / '20190807'
        / f'{PREFIX}20190807041000_20190807041459_4000M_V0001.HDF'
    )
    with pytest.raises(InvalidInputError, match='missing variables NOMChannel14'):
        read_agri(str(path))


def test_read_agri_bad_table() -> None:
    path = (
        RAW
        / 'FY4A'
        / '20190807'
        / f'{PREFIX}20190807040900_20190807041359_4000M_V0001.HDF'
    )
    with pytest.raises(InvalidInputError, match='CALChannel05 has 10 entries'):
        read_agri(str(path))


def test_read_agri_line_numbers_mismatch(tmp_path: Path) -> None:
    path = tmp_path / f'{PREFIX}20200101120000_20200101121459_4000M_V0001.HDF'
    write_agri(
        path, {'Begin Line Number': np.int32(10), 'End Line Number': np.int32(20)}
    )
    with pytest.raises(InvalidInputError, match='do not match the 3 rows'):
        read_agri(str(path))


def test_read_agri_not_hdf(tmp_path: Path) -> None:
    path = tmp_path / 'broken.HDF'
    path.write_text('not hdf5')
    with pytest.raises(InvalidInputError, match='not a readable'):
        read_agri(str(path))
    with pytest.raises(MissingInputError):
        read_agri(str(tmp_path / 'absent.HDF'))


# ----------------------------------------------------------------- regridding


def test_regrid_known_points() -> None:
    scene = read_agri(str(GOOD))
    grid = regrid_agri(scene)
    assert grid.shape == (14, 900, 1000)
    lat, lon = grid_coordinates()
    rows = np.array([800, 801, 850, 899, 820, 805])
    cols = np.array([400, 455, 499, 500, 599, 530])
    exp_line, exp_col = cgms_line_column(
        lat[rows], lon[cols], scene.a, scene.b, scene.a + scene.h, 104.7
    )
    # Channel 1 holds the full-disk line, channel 2 the column (table n / 4096):
    # the nearest pixel is within half a pixel of the exact position.
    got_line = grid[0, rows, cols] * 4096
    got_col = grid[1, rows, cols] * 4096
    assert np.abs(got_line - exp_line).max() <= 0.5 + 1e-6
    assert np.abs(got_col - exp_col).max() <= 0.5 + 1e-6
    np.testing.assert_array_equal(got_line, np.floor(exp_line + 0.5))
    # Outside the regional file: no data.
    assert np.isnan(grid[:, 0, 0]).all()
    assert np.isnan(grid[:, 899, 999]).all()


def test_regrid_with_file_latlon() -> None:
    # A source already on a 0.05 degree lat/lon grid around 30N 120E.
    lat = 30 - 0.05 * np.arange(20)
    lon = 120 + 0.05 * np.arange(30)
    lat2, lon2 = np.meshgrid(lat, lon, indexing='ij')
    data = np.stack([np.arange(600, dtype=np.float32).reshape(20, 30)] * 14)
    scene = AGRIScene(
        path='x',
        stem='x',
        start=dt.datetime(2020, 1, 1),
        end=dt.datetime(2020, 1, 1),
        data=data,
        lat=lat2,
        lon=lon2,
    )
    grid = regrid_agri(scene)
    row, col = 400, 700  # lat 30, lon 120
    np.testing.assert_array_equal(grid[3, row : row + 20, col : col + 30], data[3])
    assert np.isnan(grid[0, row - 1, col])  # one grid pixel beyond the source
    assert np.isfinite(grid[0]).sum() == 600


# ------------------------------------------------------------------- Himawari


def test_find_himawari_and_pairing() -> None:
    products = find_himawari(str(RAW / 'Himawari'))
    assert [p.time.strftime('%H%M') for p in products] == ['0400', '0410', '0420']
    t = dt.datetime(2019, 8, 7, 4, 0)
    pick = pair_product(
        t + dt.timedelta(minutes=8), t + dt.timedelta(minutes=13), products
    )
    assert pick is not None
    assert pick.path.endswith('0410_L2CLP010_FLDK.02401_02401.nc')
    # Two inside: the one closest to the window centre.
    pick = pair_product(
        t - dt.timedelta(minutes=1), t + dt.timedelta(minutes=21), products
    )
    assert pick is not None
    assert pick.time.minute == 10
    pick = pair_product(
        t - dt.timedelta(minutes=1), t + dt.timedelta(minutes=6), products
    )
    assert pick is not None
    assert pick.time.minute == 0
    # None inside the window, unless widened.
    late = t + dt.timedelta(minutes=21)
    assert pair_product(late, late + dt.timedelta(minutes=4), products) is None
    pick = pair_product(
        late,
        late + dt.timedelta(minutes=4),
        products,
        tolerance=dt.timedelta(minutes=2),
    )
    assert pick is not None
    assert pick.time.minute == 20


def test_read_cltype() -> None:
    mask = read_cltype(str(HIMAWARI_0410))
    assert mask.shape == (900, 1000)
    assert mask.dtype == np.uint8
    with xr.open_dataset(HIMAWARI_0410, engine='h5netcdf') as ds:
        raw = ds['CLTYPE'].values.astype(int)
        lat = ds['latitude'].values
        lon = ds['longitude'].values
    # Grid rows 800..899 (10N..5.05N), cols 400..599 (105E..114.95E).
    r0 = int(np.argmin(np.abs(lat - 10.0)))
    c0 = int(np.argmin(np.abs(lon - 105.0)))
    expected = np.where(raw == 255, 10, raw)[r0 : r0 + 100, c0 : c0 + 200]
    np.testing.assert_array_equal(mask[800:900, 400:600], expected)
    assert (raw == 255).any()
    assert (raw == 10).any()
    # The file covers 12N..3N, 100E..120E only.
    assert (mask[:760] == 10).all()
    assert (mask[:, 701:] == 10).all()
    assert (mask[760:, 700] != 10).any()
    assert int((mask[800:900, 400:500] == 10).sum()) == 1250
    assert int((mask[800:900, 500:600] == 10).sum()) == 1251


def test_read_cltype_signed_bytes(tmp_path: Path) -> None:
    path = tmp_path / 'NC_H08_20200101_0000_L2CLP010_FLDK.02401_02401.nc'
    values = np.array([[0, 9, -1], [3, 10, 12]], dtype=np.int8)  # -1 is 255
    xr.Dataset(
        {'CLTYPE': (('latitude', 'longitude'), values)},
        coords={'latitude': [50.0, 49.95], 'longitude': [85.0, 85.05, 85.1]},
    ).to_netcdf(path, engine='scipy')  # NetCDF3 classic, signed bytes
    mask = read_cltype(str(path))
    np.testing.assert_array_equal(mask[:2, :3], [[0, 9, 10], [3, 10, 10]])
    assert (mask[2:] == 10).all()
    assert (mask[:, 3:] == 10).all()


def test_read_cltype_missing_variable(tmp_path: Path) -> None:
    path = tmp_path / 'NC_H08_20200101_0000_L2CLP010_FLDK.02401_02401.nc'
    xr.Dataset(
        {'CLOT': (('latitude', 'longitude'), np.zeros((1, 1)))},
        coords={'latitude': [50.0], 'longitude': [85.0]},
    ).to_netcdf(path, engine='h5netcdf')
    with pytest.raises(InvalidInputError, match='missing CLTYPE'):
        read_cltype(str(path))


# ------------------------------------------------------- normalise and tiles


def test_normalise_groups_jointly() -> None:
    image = np.zeros((14, 2, 2), dtype=np.float32)
    image[:6] = 5.0
    image[0, 0, 0] = 2.0
    image[5, 1, 1] = 10.0
    image[6:] = 250.0
    image[13, 0, 1] = 200.0
    image[7, 1, 0] = np.nan
    out, stats = normalise(image)
    assert stats == [(2.0, 10.0), (200.0, 250.0)]
    assert out.dtype == np.float64
    assert out[0, 0, 0] == 0
    assert out[5, 1, 1] == 1
    assert out[3, 0, 0] == pytest.approx(3 / 8)  # same group scale as channel 1
    assert out[13, 0, 1] == 0
    assert out[6, 0, 0] == 1
    assert out[7, 1, 0] == 0  # missing -> 0
    assert out.min() >= 0
    assert out.max() <= 1


def test_iter_tiles_fill_rule() -> None:
    image = np.arange(900 * 1000, dtype=np.float64).reshape(1, 900, 1000)
    mask = np.zeros((900, 1000), dtype=np.uint8)
    mask[0:12, 300:400] = 10
    mask[12, 300:350] = 10  # tile 3: 1250 fill pixels
    mask[100:113, 700:800] = 10  # tile 17: 1300 fill pixels
    tiles = list(iter_tiles(image, mask))
    assert [k for k, *_ in tiles] == list(range(90))
    keep = {k: kept for k, _, _, kept in tiles}
    assert keep[3]
    assert not keep[17]
    assert sum(keep.values()) == 89
    k, tile, tile_mask, _ = tiles[57]  # i = 5, j = 7
    assert k == 57
    assert tile.shape == (1, 100, 100)
    assert tile_mask.shape == (100, 100)
    assert tile[0, 0, 0] == 500 * 1000 + 700
    # Custom threshold.
    assert sum(kept for *_, kept in iter_tiles(image, mask, max_fill=1300)) == 90


# ------------------------------------------------------------- end to end


@pytest.fixture(scope='module')
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BuildReport]:
    out = tmp_path_factory.mktemp('fyh_built')
    with pytest.warns(UserWarning, match='FYH builder skipped'):
        report = build_fyh(
            str(RAW / 'FY4A'), str(RAW / 'Himawari'), str(out), geotiff=True
        )
    return out, report


@pytest.mark.slow
def test_build_report(built: tuple[Path, BuildReport]) -> None:
    _, report = built
    assert report.scenes == [GOOD_STEM]
    assert report.tiles_written == 1
    assert report.tiles_dropped == 89
    reasons = {os.path.basename(p): r for p, r in report.skipped}
    assert len(reasons) == 3
    assert (
        'CALChannel05 has 10 entries'
        in reasons[f'{PREFIX}20190807040900_20190807041359_4000M_V0001.HDF']
    )
    assert (
        'NOMChannel14'
        in reasons[f'{PREFIX}20190807041000_20190807041459_4000M_V0001.HDF']
    )
    assert (
        'no Himawari'
        in reasons[f'{PREFIX}20190807050100_20190807050459_4000M_V0001.HDF']
    )
    assert '1 scene(s) built, 1 tile(s) written' in report.summary()


@pytest.mark.slow
def test_build_tiles_load_through_fyh(built: tuple[Path, BuildReport]) -> None:
    out, _ = built
    names = sorted(os.listdir(out / 'mattrain'))
    assert names == [f'{GOOD_STEM}_84.mat']
    assert sorted(os.listdir(out / 'matmasktrain')) == names
    assert not [
        n for n in os.listdir(out / 'mattrain') if n.startswith('.')
    ]  # no temporaries
    ds = FYH(str(out), split='train')
    sample = ds[0]
    assert sample['image'].shape == (14, 100, 100)
    assert 0 <= sample['image'].min()
    assert sample['image'].max() <= 1
    assert sample['id'] == f'{GOOD_STEM}_84'
    torch.testing.assert_close(
        sample['transform'],
        torch.tensor(tuple(tile_transform(84))[:6], dtype=torch.float64),
    )
    assert tile_bounds(84) == pytest.approx((104.975, 5.025, 109.975, 10.025))
    expected = read_cltype(str(HIMAWARI_0410))[800:900, 400:500]
    np.testing.assert_array_equal(sample['mask'].numpy(), expected)
    assert int((sample['mask'] == FYH.ignore_index).sum()) == 1250


@pytest.mark.slow
def test_build_scene_geotiffs(built: tuple[Path, BuildReport]) -> None:
    out, report = built
    image_path = out / 'scenes' / f'{GOOD_STEM}_image.tif'
    label_path = out / 'scenes' / f'{GOOD_STEM}_label.tif'
    assert sorted(report.geotiffs) == sorted([str(image_path), str(label_path)])
    with rasterio.open(image_path) as src:
        assert src.count == 14
        assert (src.height, src.width) == (900, 1000)
        assert src.crs.to_epsg() == 4326
        assert src.transform.almost_equals(grid_transform())
        assert float(src.tags()['C07_C14_MIN']) >= 150
        image = src.read()
    with rasterio.open(label_path) as src:
        assert src.nodata == 10
        assert src.dtypes[0] == 'uint8'
        label = src.read(1)
    tile = FYH(str(out))[0]
    np.testing.assert_allclose(
        image[:, 800:900, 400:500], tile['image'].numpy(), atol=1e-6
    )
    np.testing.assert_array_equal(label[800:900, 400:500], tile['mask'].numpy())
    # The GeoDataset view returns the same pixels for the tile's bounds.
    scenes = FYHScenes(str(out / 'scenes'))
    west, south, east, north = tile_bounds(84)
    sample = scenes[west:east, south:north]
    np.testing.assert_array_equal(sample['mask'].numpy(), tile['mask'].numpy())
    torch.testing.assert_close(sample['image'], tile['image'], atol=1e-6, rtol=0)


def test_build_missing_inputs(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match='directory not found'):
        build_fyh(
            str(tmp_path / 'absent'), str(RAW / 'Himawari'), str(tmp_path / 'out')
        )
    (tmp_path / 'empty').mkdir()
    with pytest.raises(MissingInputError, match='no FY-4A'):
        build_fyh(str(tmp_path / 'empty'), str(RAW / 'Himawari'), str(tmp_path / 'out'))
    with pytest.raises(MissingInputError, match='no Himawari'):
        build_fyh(str(RAW / 'FY4A'), str(tmp_path / 'empty'), str(tmp_path / 'out'))
    with pytest.raises(ValueError, match='split'):
        build_fyh(str(RAW / 'FY4A'), str(RAW / 'Himawari'), str(tmp_path), split='val')


def test_cli_nothing_built(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fy4a = tmp_path / 'fy4a'
    fy4a.mkdir()
    for name in os.listdir(RAW / 'FY4A' / '20190807'):
        if name != GOOD.name:
            shutil.copy(RAW / 'FY4A' / '20190807' / name, fy4a / name)
    status = main(
        ['fyh-build', str(fy4a), str(RAW / 'Himawari'), '-o', str(tmp_path / 'out')]
    )
    assert status == 1
    printed = capsys.readouterr().out
    assert '0 scene(s) built' in printed
    assert '3 scene(s) skipped' in printed
    assert 'CALChannel05' in printed


def test_cli_missing_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        ['fyh-build', str(tmp_path / 'nope'), str(RAW / 'Himawari'), '-o', 'x']
    )
    assert status == 2
    assert 'directory not found' in capsys.readouterr().err


@pytest.mark.slow
def test_cli_build_test_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / 'out'
    status = main(
        [
            'fyh-build',
            str(RAW / 'FY4A'),
            str(RAW / 'Himawari'),
            '-o',
            str(out),
            '--split',
            'test',
            '--progress',
        ]
    )
    assert status == 0
    assert '1 scene(s) built' in capsys.readouterr().out
    assert len(FYH(str(out), split='test')) == 1
    assert not (out / 'scenes').exists()
