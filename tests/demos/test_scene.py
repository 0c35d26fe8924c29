from pathlib import Path

import numpy as np
import rasterio

from torchgeo_ext.demos.scene import DEMO_CRS, make_demo_scene, synthetic_anomaly_scene


def test_deterministic() -> None:
    a, ta = synthetic_anomaly_scene(32, 8, seed=4)
    b, tb = synthetic_anomaly_scene(32, 8, seed=4)
    c, _ = synthetic_anomaly_scene(32, 8, seed=5)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ta, tb)
    assert not np.array_equal(a, c)


def test_subpixel_targets() -> None:
    cube, truth = synthetic_anomaly_scene(64, 20, abundance=(0.1, 0.2), targets=5)
    assert cube.dtype == np.float32
    assert cube.shape == (20, 64, 64)
    assert 5 <= truth.sum() <= 45
    # Sub-pixel mixing: implanted pixels stay close to the background range.
    assert cube[:, truth].max() < cube.max() * 1.5


def test_make_demo_scene(tmp_path: Path) -> None:
    path, truth = make_demo_scene(tmp_path / 'demo.tif', size=40, bands=10, seed=1)
    with rasterio.open(path) as src:
        assert src.crs.to_string() == DEMO_CRS
        assert src.count == 10
        assert (src.height, src.width) == truth.shape == (40, 40)
        assert src.transform.a == 30.0
        assert src.crs.is_projected
