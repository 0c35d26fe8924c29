import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import scipy.io
import torch
from rasterio.transform import Affine

from torchgeo_ext.datasets.hyperspectral import (
    AVIRIS_BANDS,
    AVIRIS_NG_BANDS,
    HyperspectralScene,
    envi_data_file,
    read_envi_header,
)
from torchgeo_ext.errors import InvalidInputError, MissingInputError

ROOT = Path(__file__).parents[1] / 'data' / 'had100'
TARGET = ROOT / 'data' / 'aviris_ng_target'


def read_raw(hdr: Path) -> np.ndarray:
    """Independent reader: the raw bytes, reordered to C x H x W."""
    fields = read_envi_header(hdr)
    lines, samples, bands = (int(fields[k]) for k in ('lines', 'samples', 'bands'))
    dtype = {'2': '<i2', '4': '<f4'}[fields['data type']]
    raw = np.fromfile(hdr.with_suffix('.dat'), dtype=dtype)
    if fields['interleave'] == 'bil':
        return raw.reshape(lines, bands, samples).transpose(1, 0, 2)
    return raw.reshape(lines, samples, bands).transpose(2, 0, 1)


def test_band_selection_constants() -> None:
    assert len(AVIRIS_NG_BANDS) == 276
    assert len(AVIRIS_BANDS) == 162
    assert AVIRIS_NG_BANDS[:2] == (15, 16)
    assert 108 in AVIRIS_NG_BANDS
    assert 109 not in AVIRIS_NG_BANDS
    assert AVIRIS_NG_BANDS[-1] == 406
    assert AVIRIS_BANDS[0] == 7
    assert AVIRIS_BANDS[-1] == 223
    assert 57 not in AVIRIS_BANDS
    assert 65 in AVIRIS_BANDS


@pytest.mark.parametrize(
    'path',
    [
        ROOT / 'data' / 'aviris_ng_target' / 'ang20170821t183707_1.hdr',  # BIL f32
        ROOT / 'data' / 'aviris_normal' / 'f170507t01p00r10_1.hdr',  # BIL int16
        ROOT / 'data' / 'aviris_normal' / 'f090710t01p00r10_10.hdr',  # BIP f32
    ],
)
def test_envi_values_match_raw_bytes(path: Path) -> None:
    expected = read_raw(path).astype(np.float32)
    scene = HyperspectralScene(path)
    assert scene.image.dtype == np.float32
    assert scene.image.shape == expected.shape
    valid = scene.valid_mask
    np.testing.assert_array_equal(scene.image[:, valid], expected[:, valid])
    assert scene.interleave == read_envi_header(path)['interleave']


def test_envi_nodata_filled_with_band_mean() -> None:
    path = ROOT / 'data' / 'aviris_ng_normal' / 'ang20191004t185054_13.hdr'
    raw = read_raw(path).astype(np.float32)
    scene = HyperspectralScene(path)
    # -9999 at (0, 0), 1e-34 at (7, 7) and in band 5 of (7, 0)
    assert not scene.valid_mask[0, 0]
    assert not scene.valid_mask[7, 7]
    assert not scene.valid_mask[7, 0]
    assert scene.num_invalid == 3
    assert scene.valid_mask.sum() == 61
    bad = (raw == -9999) | np.isclose(raw, 1e-34, rtol=1e-6, atol=0)
    for band in (0, 5, 424):
        mean = raw[band][~bad[band]].mean()
        np.testing.assert_allclose(scene.image[band][bad[band]], mean, rtol=1e-6)
    # band 0 of (7, 0) was valid and is kept
    assert scene.image[0, 7, 0] == raw[0, 7, 0]
    assert scene.image.min() > 0


def test_constant_fill() -> None:
    path = ROOT / 'data' / 'aviris_ng_target' / 'ang20170821t183707_1.hdr'
    scene = HyperspectralScene(path, fill=0.0)
    assert (scene.image[:, 0, 0] == 0).all()


def test_envi_georeferencing() -> None:
    scene = HyperspectralScene(TARGET / 'ang20170821t183707_1.hdr')
    assert scene.crs == 'EPSG:32611'
    assert scene.transform == pytest.approx((5, 0, 724522.127, 0, -5, 4074620.759))


def test_envi_read_under_torchgeo_cli_gdal_settings() -> None:
    # TorchGeo's CLI forbids GDAL folder listing process-wide; the ENVI header
    # is a sidecar file that must still be found.
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN='EMPTY_DIR'):
        scene = HyperspectralScene(TARGET / 'ang20170821t183707_1.hdr')
    assert scene.crs == 'EPSG:32611'


def test_envi_rotated_map_info() -> None:
    # map info rotation=75: the tie point stays the corner, the pixel size is
    # 5 m along both rotated axes.
    scene = HyperspectralScene(TARGET / 'ang20190915t201455_2.dat')
    assert scene.transform is not None
    a, b, c, d, e, f = scene.transform
    assert (c, f) == pytest.approx((724522.127, 4074620.759))
    assert math.hypot(a, d) == pytest.approx(5.0)
    assert math.hypot(b, e) == pytest.approx(5.0)
    assert a * b + d * e == pytest.approx(0.0, abs=1e-9)  # orthogonal axes
    assert abs(math.degrees(math.atan2(d, a))) == pytest.approx(75.0)


def test_envi_band_selection_reads_only_those_bands() -> None:
    path = TARGET / 'ang20170821t183707_1.hdr'
    full = HyperspectralScene(path)
    part = HyperspectralScene(path, bands=[3, 0, 424])
    np.testing.assert_array_equal(part.image, full.image[[3, 0, 424]])
    assert part.num_bands_in_file == 425


def test_wrong_band_count(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r'f170507t01p00r10_1\.hdr.*224 bands'):
        HyperspectralScene(
            ROOT / 'data' / 'aviris_normal' / 'f170507t01p00r10_1.hdr',
            expected_bands=425,
        )
    with pytest.raises(InvalidInputError, match='out of range'):
        HyperspectralScene(TARGET / 'ang20170821t183707_1.hdr', bands=[425])


def test_header_without_data_file(tmp_path: Path) -> None:
    shutil.copy(TARGET / 'ang20170821t183707_1.hdr', tmp_path / 'lonely.hdr')
    with pytest.raises(MissingInputError, match=r'lonely\.hdr.*data file'):
        HyperspectralScene(tmp_path / 'lonely.hdr')
    with pytest.raises(MissingInputError, match='lonely'):
        envi_data_file(tmp_path / 'lonely.hdr')


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match=r'nope\.mat'):
        HyperspectralScene(tmp_path / 'nope.mat')


def test_not_a_header(tmp_path: Path) -> None:
    (tmp_path / 'x.hdr').write_text('hello\n')
    (tmp_path / 'x.dat').write_bytes(b'\0' * 16)
    with pytest.raises(InvalidInputError, match=r'x\.hdr'):
        HyperspectralScene(tmp_path / 'x.hdr')


def test_mat_scene() -> None:
    path = ROOT / 'mat' / 'with_anomaly' / '1.mat'
    contents = scipy.io.loadmat(path)
    scene = HyperspectralScene(path)
    np.testing.assert_allclose(
        scene.image, contents['data'].transpose(2, 0, 1).astype(np.float32)
    )
    assert scene.mask is not None
    np.testing.assert_array_equal(scene.mask, contents['map'])
    assert scene.mask.dtype == np.int64
    assert scene.crs is None
    assert scene.transform is None
    assert scene.valid_mask.all()
    sample = scene.to_sample()
    assert set(sample) == {'image', 'valid_mask', 'mask'}


def test_mat_other_keys_and_nodata(tmp_path: Path) -> None:
    cube = np.ones((4, 5, 3))
    cube[1, 2, 0] = -9999
    cube[0, 0, 2] = np.nan
    gt = np.zeros((4, 5), np.uint8)
    gt[3, 4] = 2
    scipy.io.savemat(tmp_path / 'abu.mat', {'hsi': cube, 'gt': gt})
    scene = HyperspectralScene(tmp_path / 'abu.mat', bands=[0, 2])
    assert scene.image.shape == (2, 4, 5)
    assert scene.mask is not None
    assert scene.mask[3, 4] == 1
    assert scene.mask.sum() == 1
    assert not scene.valid_mask[1, 2]
    assert not scene.valid_mask[0, 0]
    assert np.isfinite(scene.image).all()
    np.testing.assert_allclose(scene.image, 1.0)


def test_mat_v73(tmp_path: Path) -> None:
    h5py = pytest.importorskip('h5py')
    cube = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    with h5py.File(tmp_path / 'v73.mat', 'w') as f:
        f['data'] = cube.T  # MATLAB stores column-major
        f['map'] = np.eye(2, 3).T
    scene = HyperspectralScene(tmp_path / 'v73.mat')
    np.testing.assert_array_equal(scene.image, cube.transpose(2, 0, 1))
    assert scene.mask is not None
    assert scene.mask.shape == (2, 3)


def test_mat_without_cube(tmp_path: Path) -> None:
    scipy.io.savemat(tmp_path / 'bad.mat', {'x': np.zeros((3, 3))})
    with pytest.raises(InvalidInputError, match=r'bad\.mat.*data'):
        HyperspectralScene(tmp_path / 'bad.mat')


def test_geotiff_round_trip(tmp_path: Path) -> None:
    data = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    data[:, 2, 3] = -5
    transform = Affine(30, 0, 300000, 0, -30, 5000000)
    path = tmp_path / 'scene.tif'
    with rasterio.open(
        path,
        'w',
        driver='GTiff',
        width=5,
        height=4,
        count=3,
        dtype='float32',
        crs='EPSG:32633',
        transform=transform,
        nodata=-5,
    ) as dst:
        dst.write(data)
    scene = HyperspectralScene(path)
    assert scene.crs == 'EPSG:32633'
    assert scene.transform == tuple(transform)[:6]
    assert not scene.valid_mask[2, 3]
    assert scene.num_invalid == 1
    sample = scene.to_sample()
    assert sample['transform'].dtype == torch.float64
    assert sample['image'].shape == (3, 4, 5)
    assert 'mask' not in sample


@pytest.mark.filterwarnings('ignore::rasterio.errors.NotGeoreferencedWarning')
def test_plain_tif_has_no_crs(tmp_path: Path) -> None:
    path = tmp_path / 'plain.tif'
    with rasterio.open(
        path, 'w', driver='GTiff', width=2, height=2, count=1, dtype='uint8'
    ) as dst:
        dst.write(np.ones((1, 2, 2), np.uint8))
    scene = HyperspectralScene(path)
    assert scene.crs is None
    assert scene.transform is None
    assert 'crs' not in scene.to_sample()


@pytest.mark.filterwarnings('ignore::rasterio.errors.NotGeoreferencedWarning')
@pytest.mark.parametrize('interleave', ['bsq', 'bil', 'bip'])
def test_envi_reader_matches_gdal(tmp_path: Path, interleave: str) -> None:
    rng = np.random.default_rng(0)
    cube = rng.random((5, 3, 4)).astype('>f4')  # C x H x W, big-endian
    order = {'bsq': (0, 1, 2), 'bil': (1, 0, 2), 'bip': (1, 2, 0)}[interleave]
    data = tmp_path / 'cube.img'
    data.write_bytes(b'\0' * 8 + np.ascontiguousarray(cube.transpose(order)).tobytes())
    (tmp_path / 'cube.hdr').write_text(
        'ENVI\nsamples = 4\nlines = 3\nbands = 5\nheader offset = 8\n'
        f'data type = 4\ninterleave = {interleave}\nbyte order = 1\n'
    )
    scene = HyperspectralScene(tmp_path / 'cube.hdr', bands=[4, 1])
    np.testing.assert_array_equal(scene.image, cube[[4, 1]].astype(np.float32))
    # GDAL needs the folder listing to find the .hdr sidecar; an earlier test may have
    # left the config option at TorchGeo's EMPTY_DIR.
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN='FALSE'), rasterio.open(data) as src:
        np.testing.assert_array_equal(src.read([5, 2]), scene.image)
    assert scene.crs is None


def test_envi_truncated_data(tmp_path: Path) -> None:
    src = TARGET / 'ang20170821t183707_1'
    shutil.copy(src.with_suffix('.hdr'), tmp_path / 'cut.hdr')
    (tmp_path / 'cut.dat').write_bytes(src.with_suffix('.dat').read_bytes()[:-4])
    with pytest.raises(InvalidInputError, match=r'cut\.dat.*bytes'):
        HyperspectralScene(tmp_path / 'cut.hdr')
