import contextlib
import itertools
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from rasterio.crs import CRS
from rasterio.transform import Affine, from_origin
from rasterio.windows import Window
from torch import Tensor, nn

from torchgeo_ext.errors import InvalidInputError
from torchgeo_ext.export.raster import RasterWriter, open_inputs, write_raster
from torchgeo_ext.pipelines import stitching, tiling
from torchgeo_ext.pipelines.tiling import (
    Blend,
    OutputKind,
    blend_weights,
    check_tiling,
    column_strips,
    predict_raster,
    tile_batches,
)

UTM = from_origin(500000, 5000000, 10, 10)


def make_raster(
    path: Path,
    array: np.ndarray,
    nodata: float | None = None,
    crs: Any = 'EPSG:32633',
    transform: Affine = UTM,
) -> Path:
    return write_raster(
        path, array, crs=crs, transform=transform, nodata=nodata, cog=False
    )


def conv_model(in_channels: int = 3, out_channels: int = 2) -> nn.Module:
    torch.manual_seed(0)
    # receptive-field radius 2 + 1 = 3
    return nn.Sequential(
        nn.Conv2d(in_channels, 4, 5, padding=2),
        nn.ReLU(),
        nn.Conv2d(4, out_channels, 3, padding=1),
    )


def whole(model: nn.Module, array: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out: Tensor = model(torch.from_numpy(array.astype(np.float32))[None])
    return out[0].numpy()


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, np.ndarray]:
    array = np.random.default_rng(0).random((3, 150, 131)).astype(np.float32)
    return make_raster(tmp_path / 'in.tif', array), array


@pytest.mark.parametrize('overlap', [6, 8, 9])
def test_crop_equals_whole_image(
    tmp_path: Path, image: tuple[Path, np.ndarray], overlap: int
) -> None:
    path, array = image
    model = conv_model()
    out = predict_raster(
        model,
        path,
        tmp_path / 'out.tif',
        tile_size=40,
        overlap=overlap,
        batch_size=3,
        blend='crop',
        progress=False,
    )
    np.testing.assert_allclose(read(out), whole(model, array), atol=1e-5, rtol=0)


def test_halo_smaller_than_receptive_field_differs(
    tmp_path: Path, image: tuple[Path, np.ndarray]
) -> None:
    path, array = image
    model = conv_model()
    out = predict_raster(
        model,
        path,
        tmp_path / 'out.tif',
        tile_size=40,
        overlap=2,
        blend='crop',
        progress=False,
    )
    assert np.abs(read(out) - whole(model, array)).max() > 1e-3


def test_output_georeferencing(tmp_path: Path) -> None:
    crs = CRS.from_proj4(
        '+proj=laea +lat_0=40 +lon_0=13.5 +x_0=0 +y_0=0 +datum=WGS84 +units=m'
    )
    transform = Affine(2.5, 0.0, -1234.5, 0.0, -2.5, 9876.25)
    array = np.random.default_rng(1).random((3, 70, 90)).astype(np.float32)
    path = make_raster(tmp_path / 'in.tif', array, crs=crs, transform=transform)
    out = predict_raster(
        conv_model(),
        path,
        tmp_path / 'out.tif',
        tile_size=32,
        overlap=8,
        progress=False,
    )
    with rasterio.open(out) as src:
        assert src.crs == crs
        assert src.transform == transform
        assert (src.count, src.height, src.width) == (2, 70, 90)
        assert src.descriptions == ('score_0', 'score_1')
        assert src.tags(ns='IMAGE_STRUCTURE').get('LAYOUT') == 'COG'


@pytest.mark.parametrize('blend', ['crop', 'linear', 'cosine'])
def test_blend_pointwise_model_exact(
    tmp_path: Path, image: tuple[Path, np.ndarray], blend: Blend
) -> None:
    path, array = image
    torch.manual_seed(0)
    model = nn.Conv2d(3, 2, 1)
    out = predict_raster(
        model,
        path,
        tmp_path / 'o.tif',
        tile_size=32,
        overlap=12,
        blend=blend,
        progress=False,
    )  # type: ignore[arg-type]
    np.testing.assert_allclose(read(out), whole(model, array), atol=1e-5, rtol=0)


@pytest.mark.parametrize('blend', ['linear', 'cosine'])
def test_blend_weights_partition_of_unity(blend: Blend) -> None:
    w = blend_weights(32, 12, blend)  # type: ignore[arg-type]
    assert w.min() > 0
    assert w.max() == 1
    np.testing.assert_allclose(w[-12:] + w[:12], 1, atol=1e-6)  # overlap of two tiles
    np.testing.assert_allclose(w[:12], np.sort(w[:12]))  # ramps up
    crop = blend_weights(32, 12, 'crop')
    assert crop.sum() == 20
    assert crop[6] == 1
    assert crop[5] == 0
    with pytest.raises(ValueError, match='2 \\* overlap'):
        blend_weights(20, 12, blend)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match='blend'):
        blend_weights(20, 2, 'gaussian')  # type: ignore[arg-type]


class TileMean(nn.Module):
    """A model whose output depends on the whole tile: seams appear without blending."""

    def forward(self, x: Tensor) -> Tensor:
        return x[:, :1] * 0 + x[:, :1].mean(dim=(2, 3), keepdim=True)


def test_blending_removes_seams(tmp_path: Path) -> None:
    ramp = np.linspace(0, 1, 128, dtype=np.float32)
    array = np.broadcast_to(ramp, (1, 64, 128)).copy()
    path = make_raster(tmp_path / 'in.tif', array)
    jumps = {}
    blends: tuple[Blend, ...] = ('crop', 'linear', 'cosine')
    for blend in blends:
        out = read(
            predict_raster(
                TileMean(),
                path,
                tmp_path / f'{blend}.tif',
                tile_size=32,
                overlap=16,
                blend=blend,
                progress=False,
            )
        )[0]  # type: ignore[arg-type]
        jumps[blend] = np.abs(np.diff(out[20], axis=-1)).max()
    assert jumps['crop'] > 0.1
    assert jumps['linear'] < jumps['crop'] / 5
    assert jumps['cosine'] < jumps['crop'] / 3


def test_constant_model_constant_output(
    tmp_path: Path, image: tuple[Path, np.ndarray]
) -> None:
    model = nn.Conv2d(3, 1, 1)
    with torch.no_grad():
        model.weight.zero_()
        assert model.bias is not None
        model.bias.fill_(0.7)
    blends: tuple[Blend, ...] = ('linear', 'cosine')
    for blend in blends:
        out = predict_raster(
            model,
            image[0],
            tmp_path / f'{blend}.tif',
            tile_size=32,
            overlap=16,
            blend=blend,
            progress=False,
        )  # type: ignore[arg-type]
        np.testing.assert_allclose(read(out), 0.7, rtol=1e-6)


def test_nodata_propagation(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    rgb = rng.integers(1, 255, (3, 60, 70)).astype(np.uint8)
    rgb[:, 10:15, 20:30] = 0  # nodata block
    ir = rng.random((1, 60, 70)).astype(np.float32)
    ir[0, 40, 50] = np.nan  # NaN counts as nodata
    a = make_raster(tmp_path / 'rgb.tif', rgb, nodata=0)
    b = make_raster(tmp_path / 'ir.tif', ir)
    bad = np.zeros((60, 70), bool)
    bad[10:15, 20:30] = True
    bad[40, 50] = True
    model = conv_model(4, 3)
    stacked = np.concatenate([rgb.astype(np.float32), np.nan_to_num(ir)])
    stacked[:, bad] = 0
    ref = whole(model, stacked)

    scores = read(
        predict_raster(
            model,
            [a, b],
            tmp_path / 's.tif',
            tile_size=32,
            overlap=8,
            blend='crop',
            progress=False,
        )
    )
    assert np.isnan(scores[:, bad]).all()
    assert not np.isnan(scores[:, ~bad]).any()
    np.testing.assert_allclose(scores[:, ~bad], ref[:, ~bad], atol=1e-4, rtol=1e-5)

    out = predict_raster(
        model,
        [a, b],
        tmp_path / 'c.tif',
        tile_size=32,
        overlap=8,
        blend='crop',
        output_kind='classes',
        class_names=['a', 'b', 'c'],
        progress=False,
    )
    with rasterio.open(out) as src:
        classes = src.read(1)
        assert src.nodata == 255
        assert src.dtypes == ('uint8',)
        assert json.loads(src.tags()['class_names']) == ['a', 'b', 'c']
    assert (classes[bad] == 255).all()
    np.testing.assert_array_equal(classes[~bad], ref.argmax(0)[~bad])

    out = predict_raster(
        model,
        [a, b],
        tmp_path / 'n.tif',
        tile_size=32,
        overlap=8,
        nodata=-999.0,
        progress=False,
    )
    with rasterio.open(out) as src:
        assert src.nodata == -999
        assert (src.read()[:, bad] == -999).all()


def test_probabilities(tmp_path: Path, image: tuple[Path, np.ndarray]) -> None:
    path, array = image
    model = conv_model()
    out = predict_raster(
        model,
        path,
        tmp_path / 'p.tif',
        tile_size=40,
        overlap=8,
        blend='cosine',
        output_kind='probabilities',
        class_names=['x', 'y'],
        progress=False,
    )
    probs = read(out)
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)
    ref = torch.softmax(torch.from_numpy(whole(model, array)), 0).numpy()
    # far from tile borders the cosine blend sees only exact tile outputs
    np.testing.assert_allclose(probs[:, :10, :10], ref[:, :10, :10], atol=1e-5)
    with rasterio.open(out) as src:
        assert src.descriptions == ('x', 'y')


def test_modalities_equal_stacked_file(
    tmp_path: Path, image: tuple[Path, np.ndarray]
) -> None:
    path, array = image
    a = make_raster(tmp_path / 'a.tif', array[:2])
    b = make_raster(tmp_path / 'b.tif', array[2:])
    model = conv_model()
    one = read(
        predict_raster(
            model, path, tmp_path / 'one.tif', tile_size=40, overlap=8, progress=False
        )
    )
    two = read(
        predict_raster(
            model, [a, b], tmp_path / 'two.tif', tile_size=40, overlap=8, progress=False
        )
    )
    np.testing.assert_array_equal(one, two)


def test_mismatched_modalities_raise(
    tmp_path: Path, image: tuple[Path, np.ndarray]
) -> None:
    path, array = image
    other = make_raster(
        tmp_path / 'shifted.tif',
        array[:1],
        transform=from_origin(500005, 5000000, 10, 10),
    )
    with pytest.raises(InvalidInputError, match=r'shifted\.tif.*in\.tif'):
        predict_raster(
            conv_model(4), [path, other], tmp_path / 'out.tif', progress=False
        )
    assert not (tmp_path / 'out.tif').exists()


class FailOnThirdCall(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError('model crashed')
        return x[:, :2]


def test_atomic_failure_mid_prediction(tmp_path: Path) -> None:
    array = np.random.default_rng(0).random((3, 600, 64)).astype(np.float32)
    path = make_raster(tmp_path / 'in.tif', array)
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    with pytest.raises(RuntimeError, match='model crashed'):
        predict_raster(
            FailOnThirdCall(),
            path,
            out_dir / 'o.tif',
            tile_size=64,
            overlap=0,
            batch_size=3,
            progress=False,
        )
    assert list(out_dir.iterdir()) == []


def test_streaming_memory_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    array = np.random.default_rng(0).random((1, 3000, 40)).astype(np.float32)
    path = make_raster(tmp_path / 'in.tif', array)
    rows_seen: list[int] = []
    writes: list[int] = []
    original_ensure = stitching.Accumulator._ensure
    original_write = RasterWriter.write

    def ensure(self: Any, rows: int) -> None:
        original_ensure(self, rows)
        rows_seen.append(self.valid.shape[0])

    def write(self: Any, window: Any, data: Any) -> None:
        writes.append(int(window.height))
        original_write(self, window, data)

    monkeypatch.setattr(stitching.Accumulator, '_ensure', ensure)
    monkeypatch.setattr(RasterWriter, 'write', write)
    out = predict_raster(
        nn.Identity(),
        path,
        tmp_path / 'o.tif',
        tile_size=32,
        overlap=8,
        batch_size=4,
        progress=False,
    )
    np.testing.assert_allclose(read(out), array, atol=1e-6)
    # rows in flight + one 256-row block (with doubling growth), not 3000
    assert max(rows_seen) <= 2 * (256 + 2 * 32)
    assert len(writes) > 3
    assert all(h % 256 == 0 for h in writes[:-1])
    assert sum(writes) == 3000


@pytest.mark.parametrize(
    ('width', 'tile', 'overlap', 'strip'),
    [
        (5000, 512, 64, 2048),
        (5000, 512, 64, 1),  # one tile per strip
        (2000, 512, 64, 2048),  # one strip
        (700, 64, 16, 256),
        (700, 64, 40, 1),  # stride 24 < block: strips grow to finish a block
        (300, 512, 64, 2048),  # raster narrower than a tile
        (4097, 300, 0, 1000),
    ],
)
def test_column_strips_partition_the_width(
    width: int, tile: int, overlap: int, strip: int
) -> None:
    starts = tiling.tile_grid(width, tile, overlap)
    tw = min(tile, width)
    strips = column_strips(starts, tw, width, strip)
    assert [j for s in strips for j in s.tiles] == list(range(len(starts)))
    assert strips[0].start == 0
    assert strips[-1].final == strips[-1].stop == width
    for s, following in itertools.pairwise(strips):
        assert following.start == s.final  # the finished ranges partition the width
        assert s.final % 256 == 0
        # the next strip's tiles cover everything this strip carries over to it
        assert starts[following.tiles[0]] >= s.final
        assert s.stop == starts[s.tiles[-1]] + tw
        assert s.stop - s.final <= overlap + 255 or len(s.tiles) == 1
    for s in strips:
        assert s.start < s.final <= s.stop
        assert s.start <= starts[s.tiles[0]]


@pytest.mark.parametrize('blend', ['cosine', 'linear', 'crop'])
@pytest.mark.parametrize('kind', ['scores', 'classes'])
def test_strips_equal_one_strip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blend: Blend, kind: OutputKind
) -> None:
    # A raster five strips wide (tiles 64, overlap 16, strips of ~256 px) gives
    # the same output as one strip over the whole width, nodata included.
    array = np.random.default_rng(5).random((3, 90, 1100)).astype(np.float32)
    array[:, 30:40, 250:270] = -1  # nodata across a strip boundary
    path = make_raster(tmp_path / 'in.tif', array, nodata=-1)
    model = conv_model()
    options: dict[str, Any] = {
        'tile_size': 64,
        'overlap': 16,
        'blend': blend,
        'output_kind': kind,
        'progress': False,
    }
    one = read(predict_raster(model, path, tmp_path / 'one.tif', **options))
    monkeypatch.setattr(tiling, 'STRIP_WIDTH', 256)
    columns: list[tuple[int, int]] = []
    original_write = RasterWriter.write

    def write(self: Any, window: Any, data: Any) -> None:
        columns.append((int(window.col_off), int(window.width)))
        original_write(self, window, data)

    monkeypatch.setattr(RasterWriter, 'write', write)
    many = read(predict_raster(model, path, tmp_path / 'many.tif', **options))
    assert len({c for c, _ in columns}) >= 4
    assert all(c % 256 == 0 for c, _ in columns)
    np.testing.assert_allclose(many, one, rtol=1e-6, atol=1e-6)
    if kind == 'scores':
        assert np.isnan(many[:, 30:40, 250:270]).all()


def test_buffers_do_not_grow_with_width(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The buffered band is one strip wide, and what is carried to the next
    # strip is the overlap widened to the block grid, whatever the width.
    array = np.random.default_rng(1).random((1, 40, 3000)).astype(np.float32)
    path = make_raster(tmp_path / 'in.tif', array)
    monkeypatch.setattr(tiling, 'STRIP_WIDTH', 256)
    widths: list[int] = []
    carried: list[int] = []
    original_init = stitching.Accumulator.__init__
    original_put = stitching.Carry.put

    def init(self: Any, channels: int, width: int, device: torch.device) -> None:
        widths.append(width)
        original_init(self, channels, width, device)

    def put(self: Any, row: int, values: Any, valid: Any) -> None:
        carried.append(valid.shape[1])
        original_put(self, row, values, valid)

    monkeypatch.setattr(stitching.Accumulator, '__init__', init)
    monkeypatch.setattr(stitching.Carry, 'put', put)
    out = predict_raster(
        nn.Identity(), path, tmp_path / 'o.tif', tile_size=32, overlap=8, progress=False
    )
    np.testing.assert_allclose(read(out), array, atol=1e-6)
    assert len(widths) > 5
    assert max(widths) <= 256 + 255 + 32
    assert carried
    assert max(carried) <= 8 + 255


def test_predict_errors(tmp_path: Path, image: tuple[Path, np.ndarray]) -> None:
    path = image[0]
    with pytest.raises(ValueError, match='overlap'):
        predict_raster(
            nn.Identity(), path, tmp_path / 'o.tif', tile_size=32, overlap=32
        )
    with pytest.raises(ValueError, match='tile size'):
        predict_raster(
            lambda x: x[:, :, :8, :8],
            path,
            tmp_path / 'o.tif',
            tile_size=32,
            overlap=8,
            progress=False,
        )
    with pytest.raises(ValueError, match='class names'):
        predict_raster(
            nn.Identity(),
            path,
            tmp_path / 'o.tif',
            tile_size=32,
            overlap=8,
            class_names=['a'],
            progress=False,
        )
    with pytest.raises(ValueError, match='output_kind'):
        predict_raster(nn.Identity(), path, tmp_path / 'o.tif', output_kind='logits')  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ['in.tif']


def test_worker_thread_joins_a_thread_the_pool_lost() -> None:
    # An interruption inside submit() can start a thread before the pool records
    # it; the block must still not end while that thread reads.
    import threading
    import time

    from torchgeo_ext.pipelines.tiling import worker_thread

    done = threading.Event()

    def slow_read() -> None:
        time.sleep(0.2)
        done.set()

    with worker_thread('read') as pool:
        pool.submit(slow_read)
        pool._threads = set()  # what the interrupted submit() leaves
    assert done.is_set()
    assert not any(
        t.name.startswith('torchgeo-ext-read') for t in threading.enumerate()
    )


# ----------------------------------------------------------- tile-batch iterator


def _windows(stack_height: int, stack_width: int, size: int) -> list[Window]:
    return [
        Window(c, r, size, size)
        for r in tiling.tile_grid(stack_height, size, 4)
        for c in tiling.tile_grid(stack_width, size, 4)
    ]


def test_tile_batches_read_every_window_in_order(
    image: tuple[Path, np.ndarray],
) -> None:
    path, array = image
    with open_inputs(path) as stack:
        windows = _windows(stack.height, stack.width, 32)
        groups = [int(w.col_off) // 64 for w in windows]
        with contextlib.closing(
            tile_batches(stack, windows, 3, groups=groups, read_ahead=2)
        ) as batches:
            seen = list(batches)
    assert [i for b in seen for i in b.indices] == list(range(len(windows)))
    for batch in seen:
        assert len(batch.indices) <= 3
        assert len({groups[i] for i in batch.indices}) == 1  # never mixes groups
        assert batch.image.shape == (len(batch.indices), 3, 32, 32)
        assert batch.valid.shape == (len(batch.indices), 32, 32)
        assert batch.valid.all()
        for window, tile in zip(batch.windows, batch.image):
            r, c = int(window.row_off), int(window.col_off)
            np.testing.assert_array_equal(
                tile.numpy(), array[:, r : r + 32, c : c + 32]
            )


def test_batch_indices_split_on_size_and_group() -> None:
    windows = [Window(0, 0, 8, 8)] * 3 + [Window(0, 0, 8, 4)] * 2
    assert tiling.batch_indices(windows, 2) == [[0, 1], [2], [3, 4]]
    assert tiling.batch_indices(windows, 9, groups=[0, 1, 1, 1, 1]) == [
        [0],
        [1, 2],
        [3, 4],
    ]


def _masked_vrt(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 2-band VRT whose bands have different nodata values (0 and 9)."""
    a = np.full((1, 20, 24), 5, dtype=np.uint8)
    b = np.full((1, 20, 24), 6, dtype=np.uint8)
    a[0, 2, 3] = 0  # band 1's nodata
    b[0, 7, 8] = 9  # band 2's nodata
    b[0, 4, 5] = 0  # 0 is valid in band 2
    expected = np.ones((20, 24), dtype=bool)
    expected[2, 3] = expected[7, 8] = False
    bands = []
    for k, (name, data, nodata) in enumerate([('a', a, 0), ('b', b, 9)], start=1):
        make_raster(tmp_path / f'{name}.tif', data)
        bands.append(
            f'<VRTRasterBand dataType="Byte" band="{k}"><NoDataValue>{nodata}'
            f'</NoDataValue><SimpleSource><SourceFilename relativeToVRT="1">{name}.tif'
            '</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>'
        )
    with rasterio.open(tmp_path / 'a.tif') as src:
        srs, gt = src.crs.to_wkt(), src.transform.to_gdal()
    vrt = tmp_path / 'bands.vrt'
    vrt.write_text(
        f'<VRTDataset rasterXSize="24" rasterYSize="20"><SRS>{srs}</SRS>'
        f'<GeoTransform>{", ".join(map(str, gt))}</GeoTransform>{"".join(bands)}'
        '</VRTDataset>'
    )
    return vrt, expected


def _internal_mask(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 3-band GeoTIFF with an internal (per-dataset) mask and no nodata value."""
    data = np.full((3, 20, 24), 4, dtype=np.uint8)
    mask = np.full((20, 24), 255, dtype=np.uint8)
    mask[10:, :6] = 0
    path = tmp_path / 'masked.tif'
    profile: dict[str, Any] = {
        'driver': 'GTiff', 'width': 24, 'height': 20, 'count': 3, 'dtype': 'uint8',
        'crs': 'EPSG:32633', 'transform': UTM,
    }  # fmt: skip
    with (
        rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True),
        rasterio.open(path, 'w', **profile) as dst,
    ):
        dst.write(data)
        dst.write_mask(mask)
    return path, mask > 0


@pytest.mark.parametrize('make', [_masked_vrt, _internal_mask])
def test_tile_batches_validity_from_band_nodata_and_gdal_masks(
    tmp_path: Path, make: Any
) -> None:
    path, expected = make(tmp_path)
    with open_inputs(path) as stack:
        windows = [Window(0, 0, 16, 16), Window(8, 4, 16, 16)]
        with contextlib.closing(tile_batches(stack, windows, 2)) as batches:
            (batch,) = list(batches)
    for window, valid, tile in zip(batch.windows, batch.valid, batch.image):
        r, c = int(window.row_off), int(window.col_off)
        want = expected[r : r + 16, c : c + 16]
        np.testing.assert_array_equal(valid.numpy(), want)
        assert (tile[:, ~valid] == 0).all()


def test_predict_raster_writes_nodata_over_a_gdal_mask(tmp_path: Path) -> None:
    path, expected = _internal_mask(tmp_path)
    out = predict_raster(
        nn.Conv2d(3, 2, 1), path, tmp_path / 'o.tif', tile_size=16, overlap=4,
        progress=False,
    )  # fmt: skip
    scores = read(out)
    assert np.isnan(scores[:, ~expected]).all()
    assert np.isfinite(scores[:, expected]).all()


def test_tile_batches_several_readers_read_the_same(
    image: tuple[Path, np.ndarray],
) -> None:
    path, _ = image
    with open_inputs(path) as stack:
        windows = _windows(stack.height, stack.width, 24)
        one = list(tile_batches(stack, windows, 2))
        four = list(tile_batches(stack, windows, 2, readers=4, read_ahead=6))
    assert [b.indices for b in one] == [b.indices for b in four]
    for a, b in zip(one, four):
        torch.testing.assert_close(a.image, b.image, rtol=0, atol=0)
    assert not any(
        t.name.startswith('torchgeo-ext-read') for t in threading.enumerate()
    )


def test_tile_batches_stop_on_interruption(
    image: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchgeo_ext import errors

    path, _ = image
    with open_inputs(path) as stack:
        windows = _windows(stack.height, stack.width, 24)
        batches = tile_batches(stack, windows, 2, readers=2)
        next(batches)
        monkeypatch.setattr(errors, 'RECEIVED_SIGNALS', [15])
        with pytest.raises(errors.Interrupted):
            next(batches)
    assert not any(
        t.name.startswith('torchgeo-ext-read') for t in threading.enumerate()
    )


@pytest.mark.parametrize(
    ('args', 'message'),
    [
        ((0, 0, 1, 'crop'), 'tile size must be positive'),
        ((8, 0, 0, 'crop'), 'batch size must be positive'),
        ((8, 8, 1, 'crop'), r'overlap \(8\) must be in \[0, tile size 8\)'),
        ((8, -1, 1, 'crop'), 'overlap'),
        ((8, 5, 1, 'cosine'), 'at least twice the overlap'),
        ((8, 2, 1, 'gauss'), 'blend'),
    ],
)
def test_check_tiling(args: tuple[int, int, int, str], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        check_tiling(*args)
    check_tiling(8, 4, 1, 'linear')  # the limit itself is fine
    check_tiling(8, 7, 1, 'crop')


# ------------------------------------------------------------------ output types


def test_output_types(tmp_path: Path, image: tuple[Path, np.ndarray]) -> None:
    path = image[0]
    model = conv_model()
    options: dict[str, Any] = {'tile_size': 40, 'overlap': 8, 'progress': False}
    exact = read(
        predict_raster(
            model, path, tmp_path / 'p32.tif', output_kind='probabilities', **options
        )
    )
    out = predict_raster(
        model,
        path,
        tmp_path / 'p8.tif',
        output_kind='probabilities',
        dtype='uint8',
        **options,
    )
    with rasterio.open(out) as src:
        assert src.dtypes == ('uint8', 'uint8')
        assert src.nodata == 255
        assert src.scales == pytest.approx((1 / 254, 1 / 254))
        assert src.offsets == (0.0, 0.0)
        stored = src.read()
    assert stored.max() <= 254
    np.testing.assert_allclose(stored * (1 / 254), exact, atol=0.5 / 254 + 1e-6)
    out = predict_raster(
        model,
        path,
        tmp_path / 'p16.tif',
        output_kind='probabilities',
        dtype='float16',
        **options,
    )
    with rasterio.open(out) as src:
        assert src.dtypes == ('float16', 'float16')
        half = src.read()
    np.testing.assert_allclose(half, exact, rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match='probabilities only'):
        predict_raster(model, path, tmp_path / 'x.tif', dtype='uint8', **options)
    with pytest.raises(ValueError, match='uint8'):
        predict_raster(
            model,
            path,
            tmp_path / 'x.tif',
            output_kind='classes',
            dtype='float16',
            **options,
        )
    assert not (tmp_path / 'x.tif').exists()


def test_output_is_one_cog_pass_on_any_thread_count(tmp_path: Path) -> None:
    array = np.random.default_rng(3).random((2, 600, 700)).astype(np.float32)
    path = make_raster(tmp_path / 'in.tif', array)
    outputs = []
    for threads in (None, 1):
        out = predict_raster(
            nn.Identity(),
            path,
            tmp_path / f'out{threads}.tif',
            tile_size=128,
            overlap=16,
            threads=threads,
            progress=False,
        )
        with rasterio.open(out) as src:
            assert src.tags(ns='IMAGE_STRUCTURE').get('LAYOUT') == 'COG'
            assert src.compression is not None
            assert src.compression.value == 'DEFLATE'
            assert src.tags(ns='IMAGE_STRUCTURE').get('PREDICTOR') == '3'
            assert src.overviews(1)
            outputs.append(src.read())
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_allclose(outputs[0], array, atol=1e-6)
    half = predict_raster(
        nn.Identity(),
        path,
        tmp_path / 'half.tif',
        tile_size=128,
        overlap=16,
        output_kind='probabilities',
        dtype='float16',
        progress=False,
    )
    with rasterio.open(half) as src:
        assert src.tags(ns='IMAGE_STRUCTURE').get('LAYOUT') == 'COG'
        assert src.dtypes == ('float16', 'float16')
        assert src.overviews(1) == [2, 4]
    half.unlink()
    # nothing temporary is left beside the outputs
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'in.tif',
        'out1.tif',
        'outNone.tif',
    ]
    with pytest.raises(ValueError, match='threads'):
        predict_raster(nn.Identity(), path, tmp_path / 'x.tif', threads=0)


@pytest.mark.parametrize('precision', ['bf16-mixed', '16-mixed'])
def test_mixed_precision(
    tmp_path: Path, image: tuple[Path, np.ndarray], precision: str
) -> None:
    path, array = image
    model = conv_model()
    out = predict_raster(
        model,
        path,
        tmp_path / 'o.tif',
        tile_size=40,
        overlap=8,
        blend='crop',
        precision=precision,
        progress=False,
    )
    np.testing.assert_allclose(read(out), whole(model, array), atol=0.05, rtol=0.05)


def test_precision_names() -> None:
    assert tiling.check_precision('32-true') == '32'
    assert tiling.check_precision(32) == '32'
    assert tiling.check_precision('bf16-mixed') == 'bf16-mixed'
    with pytest.raises(InvalidInputError, match='precision'):
        tiling.check_precision('16')


def test_channel_argmax_is_argmax_with_first_on_ties() -> None:
    values = torch.rand(5, 30, 40)[:, 3:20, 5:33]  # a strided band, as the strips give
    values[:, 0, 0] = 0.5  # a tie: the first channel wins
    best, ids = stitching.channel_argmax(values)
    assert ids.dtype == torch.uint8
    torch.testing.assert_close(ids.long(), values.argmax(dim=0))
    torch.testing.assert_close(best, values.amax(dim=0))
    assert ids[0, 0] == 0
