from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import torch
from geopandas.testing import assert_geodataframe_equal
from rasterio.transform import Affine, from_origin

from torchgeo_ext.errors import InvalidInputError
from torchgeo_ext.export.geometry import (
    boxes_to_polygons,
    detections_to_geodataframe,
    mask_to_polygons,
    oriented_boxes_to_polygons,
    pixel_to_world,
)
from torchgeo_ext.export.vector import write_vector

UTM = from_origin(500000, 5000000, 10, 10)


def read(path: Path) -> gpd.GeoDataFrame:
    if path.suffix == '.parquet':
        return gpd.read_parquet(path)
    return gpd.read_file(path)


def sample_gdf(crs: str = 'EPSG:32633') -> gpd.GeoDataFrame:
    return detections_to_geodataframe(
        torch.tensor([[0.0, 0.0, 10.0, 5.0], [2.5, 3.0, 4.0, 8.0]]),
        torch.tensor([1, 0]),
        torch.tensor([0.9, 0.25]),
        UTM,
        crs,
        ['car', 'truck'],
    )


@pytest.mark.parametrize('ext', ['gpkg', 'geojson', 'json', 'parquet'])
def test_vector_formats_by_extension(tmp_path: Path, ext: str) -> None:
    if ext == 'parquet':
        pytest.importorskip('pyarrow')
    gdf = sample_gdf()
    path = write_vector(tmp_path / f'dets.{ext}', gdf)
    assert path == tmp_path / f'dets.{ext}'
    back = read(path)
    assert back.crs == gdf.crs
    assert list(back.columns) == ['class_id', 'class_name', 'score', 'geometry']
    assert list(back['class_name']) == ['truck', 'car']
    np.testing.assert_allclose(back['score'], [0.9, 0.25], rtol=1e-6)
    assert all(a.equals(b) for a, b in zip(back.geometry, gdf.geometry))
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    if ext in ('geojson', 'json'):
        assert 'EPSG' in path.read_text()  # CRS recorded, coordinates not reprojected
    if ext == 'gpkg':
        assert gpd.list_layers(path)['name'].tolist() == ['dets']


def test_vector_wkt_crs(tmp_path: Path) -> None:
    wkt = (
        'PROJCS["custom",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,'
        '298.257223563]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],'
        'PROJECTION["Transverse_Mercator"],PARAMETER["latitude_of_origin",0],'
        'PARAMETER["central_meridian",14.5],PARAMETER["scale_factor",0.9995],'
        'PARAMETER["false_easting",400000],PARAMETER["false_northing",0],'
        'UNIT["metre",1],AXIS["Easting",EAST],AXIS["Northing",NORTH]]'
    )
    gdf = sample_gdf(wkt)
    back = read(write_vector(tmp_path / 'x.gpkg', gdf))
    assert back.crs == gdf.crs
    assert back.crs.to_epsg() is None


def test_vector_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match='unknown vector format'):
        write_vector(tmp_path / 'dets.shp', sample_gdf())
    with pytest.raises(ValueError, match='no CRS'):
        write_vector(
            tmp_path / 'dets.gpkg', gpd.GeoDataFrame(geometry=[shapely.Point(0, 0)])
        )
    assert list(tmp_path.iterdir()) == []


def test_vector_replaces_atomically(tmp_path: Path) -> None:
    path = write_vector(tmp_path / 'a.gpkg', sample_gdf())
    write_vector(path, sample_gdf().iloc[:1])
    assert len(read(path)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ['a.gpkg']


def test_boxes_to_polygons_rotated_transform() -> None:
    t = Affine(2.0, 1.0, 100.0, 0.5, -3.0, 200.0)
    (poly,) = boxes_to_polygons(np.array([[1.0, 2.0, 3.0, 5.0]]), t)
    corners = np.asarray(poly.exterior.coords)[:4]
    expected = [t @ (1, 2), t @ (3, 2), t @ (3, 5), t @ (1, 5)]
    np.testing.assert_allclose(corners, expected)
    assert boxes_to_polygons(np.zeros((0, 4)), t) == []
    with pytest.raises(ValueError, match=r'\(N, 4\)'):
        boxes_to_polygons(np.zeros((2, 5)), t)


def test_oriented_boxes_to_polygons() -> None:
    box = torch.tensor(
        [
            [0.0, 0.0, 4.0, 0.0, 4.0, 2.0, 0.0, 2.0],
            [5.0, 1.0, 7.0, 3.0, 5.0, 5.0, 3.0, 3.0],
        ]
    )
    polys = oriented_boxes_to_polygons(box, UTM)
    assert polys[0].area == pytest.approx(8 * 100)
    assert polys[1].area == pytest.approx(8 * 100)
    np.testing.assert_allclose(
        np.asarray(polys[1].exterior.coords)[0], [500050, 4999990]
    )
    np.testing.assert_allclose(
        pixel_to_world([[0, 0], [1, 1]], UTM), [[500000, 5000000], [500010, 4999990]]
    )
    with pytest.raises(ValueError, match=r'\(N, 8\)'):
        oriented_boxes_to_polygons(np.zeros((1, 4)), UTM)


def test_mask_to_polygons() -> None:
    mask = np.zeros((12, 10), dtype=np.int64)
    mask[1:4, 1:5] = 1  # 12 px
    mask[8, 8] = 1  # 1 px
    mask[6:10, 0:2] = 2  # 8 px
    gdf = mask_to_polygons(
        mask, UTM, 'EPSG:32633', ['bg', 'road', 'water'], min_area=2, ignore_index=0
    )
    assert gdf.crs.to_epsg() == 32633
    rows = sorted(zip(gdf['class_id'], gdf['class_name'], gdf['area']))
    assert rows == [(1, 'road', 1200.0), (2, 'water', 800.0)]
    road = gdf.geometry[gdf['class_id'] == 1].iloc[0]
    assert road.bounds == (500010.0, 4999960.0, 500050.0, 4999990.0)
    everything = mask_to_polygons(torch.from_numpy(mask), UTM, 'EPSG:32633')
    assert set(everything['class_name']) == {'0', '1', '2'}
    assert everything['area'].sum() == pytest.approx(12 * 10 * 100)
    with pytest.raises(ValueError, match='integer'):
        mask_to_polygons(mask.astype(np.float32), UTM, 'EPSG:32633')


def test_detections_to_geodataframe() -> None:
    gdf = sample_gdf()
    assert list(gdf['class_id']) == [1, 0]
    assert list(gdf['class_name']) == ['truck', 'car']
    assert gdf.geometry[0].bounds == (500000.0, 4999950.0, 500100.0, 5000000.0)
    empty = detections_to_geodataframe(np.zeros((0, 8)), [], [], UTM, 'EPSG:32633')
    assert len(empty) == 0
    assert empty.crs.to_epsg() == 32633
    unnamed = detections_to_geodataframe(
        [[0, 0, 1, 1]], [7], None, UTM, 'EPSG:4326', ['a']
    )
    assert unnamed['class_name'].tolist() == ['7']
    assert unnamed['score'].tolist() == [1.0]
    with pytest.raises(ValueError, match='labels'):
        detections_to_geodataframe([[0, 0, 1, 1]], [1, 2], None, UTM, 'EPSG:4326')
    assert_geodataframe_equal(gdf, sample_gdf())


def gpkg_columns(path: Path) -> dict[str, str]:
    """The SQL types of a GeoPackage layer's columns, as clients read them."""
    import sqlite3

    with sqlite3.connect(path) as db:
        layer = db.execute('SELECT table_name FROM gpkg_contents').fetchone()[0]
        rows = db.execute(f'PRAGMA table_info("{layer}")').fetchall()
    return {row[1]: row[2] for row in rows}


@pytest.mark.parametrize('ext', ['gpkg', 'geojson', 'parquet'])
def test_real_fields_are_float64(tmp_path: Path, ext: str) -> None:
    import pyogrio

    gdf = sample_gdf()  # score is float32 in memory
    gdf['half'] = np.asarray([0.5, 1.5], dtype=np.float16)
    gdf['nullable'] = pd.array([0.25, None], dtype='Float32')
    assert gdf['score'].dtype == np.float32
    path = write_vector(tmp_path / f'dets.{ext}', gdf)
    if ext == 'parquet':
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
        for name in ('score', 'half', 'nullable'):
            assert str(schema.field(name).type) == 'double', schema
        return
    info = pyogrio.read_info(path)
    types = dict(zip(info['fields'], info['dtypes']))
    assert types['score'] == types['half'] == types['nullable'] == 'float64'
    if ext == 'gpkg':
        # REAL, not FLOAT (float32), which fiona 1.10 and old QGIS skip.
        columns = gpkg_columns(path)
        assert columns['score'] == columns['half'] == columns['nullable'] == 'REAL'


@pytest.mark.parametrize('ext', ['gpkg', 'parquet'])
@pytest.mark.parametrize('kind', ['detections', 'classes'])
def test_empty_output_keeps_the_schema(tmp_path: Path, ext: str, kind: str) -> None:
    import pyogrio

    def make(n: int) -> gpd.GeoDataFrame:
        if kind == 'detections':
            boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0]])[:n]
            labels, scores = torch.tensor([1])[:n], torch.tensor([0.5])[:n]
            return detections_to_geodataframe(
                boxes, labels, scores, UTM, 'EPSG:32633', ['a', 'b']
            )
        mask = np.zeros((4, 4), dtype=np.int32)
        mask[:2, :2] = n
        return mask_to_polygons(mask, UTM, 'EPSG:32633', ['bg', 'x'], ignore_index=0)

    full, empty = make(1), make(0)
    assert len(full) == 1
    assert len(empty) == 0
    paths = [
        write_vector(tmp_path / f'{n}.{ext}', g)
        for n, g in (('full', full), ('empty', empty))
    ]
    if ext == 'parquet':
        import pyarrow.parquet as pq

        full_schema, empty_schema = (pq.read_schema(p) for p in paths)
        assert full_schema.types == empty_schema.types
        assert str(empty_schema.field('class_name').type) == 'large_string'
        return
    full_info, empty_info = (pyogrio.read_info(p) for p in paths)
    assert list(empty_info['fields']) == list(full_info['fields'])
    assert list(empty_info['dtypes']) == list(full_info['dtypes'])
    assert empty_info['geometry_type'] == full_info['geometry_type'] == 'Polygon'
    assert gpkg_columns(paths[1]) == gpkg_columns(paths[0])
    assert gpkg_columns(paths[1])['class_name'] == 'TEXT'
    assert empty_info['features'] == 0


@pytest.mark.parametrize('ext', ['gpkg', 'geojson'])
def test_vector_on_a_full_disk(
    tmp_path: Path, ext: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import pyogrio
    import pyogrio.geopandas

    out = tmp_path / f'dets.{ext}'
    out.write_text('previous result\n')
    real = pyogrio.geopandas.write_dataframe

    def fill_the_disk(df: gpd.GeoDataFrame, path: str, **kwargs: object) -> None:
        real(df, path, **kwargs)  # the file (a temporary) exists, then the disk fills
        raise pyogrio.errors.FeatureError(
            'failed to write feature 2: sqlite3_step() failed: database or disk is full'
        )

    monkeypatch.setattr(pyogrio.geopandas, 'write_dataframe', fill_the_disk)
    monkeypatch.setattr(pyogrio, 'write_dataframe', fill_the_disk)
    with pytest.raises(OSError, match='No space left on device') as info:
        write_vector(out, sample_gdf())
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(out)  # the output, not its temporary file
    assert '.tmp-' not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    assert out.read_text() == 'previous result\n'


def test_write_failure_unrelated_to_the_disk_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyogrio
    import pyogrio.geopandas

    def broken(df: gpd.GeoDataFrame, path: str, **kwargs: object) -> None:
        raise pyogrio.errors.FieldError('unsupported field type')

    monkeypatch.setattr(pyogrio.geopandas, 'write_dataframe', broken)
    monkeypatch.setattr(pyogrio, 'write_dataframe', broken)
    with pytest.raises(pyogrio.errors.FieldError):
        write_vector(tmp_path / 'dets.gpkg', sample_gdf())
    assert list(tmp_path.iterdir()) == []
